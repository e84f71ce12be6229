"""The model card in a tuned model folder: what it was trained from and on, and what it measured.

``ragtune.json`` (machine-readable) is written at training time; after the
evaluation stage, :func:`add_evaluation` adds the before/after metrics to it
and writes ``RAGTUNE.md`` beside sentence-transformers' own ``README.md``, so
whoever finds the folder sees base, data, loss, dimensions, quality and time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ragtune._io import write_json, write_text

CARD_FILE = "ragtune.json"
CARD_MD = "RAGTUNE.md"
_KEY_METRICS = ("hit@5", "ndcg@10", "mrr@10", "recall@10")


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """The card of a model folder; empty for a folder without one (a hub id, a plain model) or an unreadable one."""
    path = Path(model_dir) / CARD_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def add_evaluation(model_dir: str | Path, report: Mapping[str, Any]) -> Path:
    """Store ``report``'s key metrics in the card and (re)write ``RAGTUNE.md``; returns its path."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    metrics = {
        label: {dim: {k: v for k, v in m.items() if k in _KEY_METRICS} for dim, m in per_dim.items()}
        for label, per_dim in report.get("metrics", {}).items()
    }
    card["evaluation"] = {
        "dataset": report.get("dataset", {}),
        "metrics": metrics,
        # tuned − base nDCG@10 per dimension, with the paired bootstrap CI
        "ndcg@10_difference": {
            name: {dim: per_metric["ndcg@10"] for dim, per_metric in per_dim.items() if "ndcg@10" in per_metric}
            for name, per_dim in report.get("comparison", {}).items()
        },
    }
    write_json(model_dir / CARD_FILE, card)
    return write_text(model_dir / CARD_MD, render_card(card, model_dir))


def usage_lines(model_dir: str | Path | None) -> list[str]:
    """How to load the folder: sentence-transformers and LlamaIndex (a test runs this snippet)."""
    path = json.dumps(str(Path(model_dir).resolve())) if model_dir is not None else '"PATH/TO/THIS/FOLDER"'
    return [
        "## Use it",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        f"model = SentenceTransformer({path})",
        "",
        "from llama_index.embeddings.ragtune import RagtuneEmbedding  # pip install ragtune",
        f"embed_model = RagtuneEmbedding(model_path={path})",
        'vector = embed_model.get_text_embedding("How do I claim the battery warranty?")',
        "```",
    ]


def render_card(card: Mapping[str, Any], model_dir: str | Path | None = None) -> str:
    """Markdown summary of a card (base, data, training, metrics before/after, time, how to load it)."""
    train = card.get("train", {})
    result = card.get("result", {})
    data = card.get("data", {})
    lines = [
        "# ragtune fine-tuned embedding model",
        "",
        f"- **Base model:** `{card.get('base_model', '?')}`",
        f"- **Data:** {data.get('pairs', '?')} pairs over {data.get('chunks', '?')} passages"
        + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(data.get('sources', {}).items()))})" if data.get("sources") else ""),
        f"- **Loss:** {train.get('loss', '?')}" + (" in Matryoshka" if train.get("matryoshka") else "")
        + f", dimensions {result.get('dims', '?')}, batches: {train.get('batching', '?')}",
        f"- **Training:** {result.get('steps', '?')} steps, {train.get('epochs', '?')} epochs,"
        f" lr {(train.get('lora') or {}).get('learning_rate', train.get('learning_rate', '?'))}"
        + (f" (LoRA r={train['lora'].get('rank')})" if train.get("lora") else "") + ","
        f" {result.get('precision', '?')}, max_seq_length {result.get('max_seq_length', '?')},"
        f" {result.get('trainable_params', '?')} trainable parameters, {result.get('seconds', '?')} s",
    ]
    mix = result.get("interpolation")
    if mix and mix["alpha"] < 1:
        lines.append(
            f"- **Forgetting guard:** weights mixed {mix['alpha']} tuned / {1 - mix['alpha']:.2f} base (WiSE-FT),"
            f" alpha chosen by {mix.get('chosen_by', 'validation')}"
        )
    elif mix:
        lines.append("- **Forgetting guard:** WiSE-FT mixes tried on the validation pairs; the tuned weights scored best and were kept")
    summary = result.get("summary")
    if summary and summary.get("chunks"):
        lines.append(
            f"- **Chunk summaries:** {summary['chunks']} long chunks of the searched corpus, {summary['epochs']} epoch(s);"
            f" distance of each chunk's read to its whole-chunk target {summary['distance_before']} → {summary['distance_after']}"
            f" ({summary['seconds']} s)"
        )
    lines += ["", *usage_lines(model_dir)]
    ev = card.get("evaluation")
    if ev:
        ds = ev.get("dataset", {})
        lines += [
            "",
            f"## Retrieval quality on {ds.get('name', 'the evaluation set')}"
            f" ({ds.get('queries', '?')} queries, {ds.get('corpus', '?')} passages; exact search)",
            "",
            "| model | dim | " + " | ".join(_KEY_METRICS) + " |",
            "|---|---:|" + "---:|" * len(_KEY_METRICS),
        ]
        for label, per_dim in ev.get("metrics", {}).items():
            for dim, m in per_dim.items():
                cells = " | ".join(f"{m[k]:.3f}" if k in m else "" for k in _KEY_METRICS)
                lines.append(f"| {label} | {dim} | {cells} |")
        diffs = [(n, d, x) for n, per_dim in ev.get("ndcg@10_difference", {}).items() for d, x in per_dim.items()]
        if diffs:
            lines += ["", "| difference | dim | nDCG@10 | 95% CI | p |", "|---|---:|---:|---|---:|"]
            for name, dim, x in diffs:
                lines.append(
                    f"| {name} | {dim} | {x['mean_diff']:+.3f} | {x['ci_low']:+.3f} … {x['ci_high']:+.3f} | {x['p_value']:.3g} |"
                )
    return "\n".join(lines) + "\n"
