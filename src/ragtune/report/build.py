"""Assemble the report record from evaluation results and write the three files."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ragtune import __version__
from ragtune._io import write_json, write_text
from ragtune.evaluation.datasets import RetrievalDataset
from ragtune.evaluation.evaluator import EvalResult, compare, full_dim


def build_report(
    dataset: RetrievalDataset,
    results: Mapping[str, EvalResult],
    models: Mapping[str, str],
    timings: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    n_examples: int = 5,
) -> dict[str, Any]:
    """The report record; ``results`` maps labels (``base``, ``tuned``, ...) to evaluations."""
    report: dict[str, Any] = {
        "ragtune_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": {
            "name": dataset.name,
            "kind": dataset.kind,
            "source": dataset.source,
            "queries": len(dataset.queries),
            "corpus": len(dataset.corpus),
            **({"info": dict(dataset.info)} if dataset.info else {}),
        },
        "models": dict(models),
        "metrics": {label: r.metrics for label, r in results.items()},
        "comparison": {},
        "examples": {},
        "timings": dict(timings or {}),
        "eval_seconds": {label: r.seconds for label, r in results.items()},
    }
    for tuned, base in (("tuned+hybrid", "base+hybrid"), ("tuned", "base"), ("tuned+long", "base+long")):
        if tuned in results and base in results:
            report["comparison"][f"{tuned}-{base}"] = compare(results[tuned], results[base])
    head = headline(results)
    if head:
        report["headline"] = head
        if head["key"] not in report["comparison"]:
            report["comparison"][head["key"]] = compare(results[head["default"]], results[head["against"]])
    if "tuned" in results and "base" in results:
        report["examples"] = gained_and_lost(dataset, results["tuned"], results["base"], n_examples)
    report["per_query"] = per_query_values(results)
    if extra:
        report.update(extra)
    return report


#: retrievers a user has without ragtune, in the order they are preferred on a tie: BM25, the base
#: model fused with BM25, and the base model alone as LlamaIndex indexes it (one vector a chunk)
WITHOUT_RAGTUNE = ("bm25", "base+hybrid", "base")


def headline(results: Mapping[str, EvalResult], metric: str = "ndcg@10") -> dict[str, Any] | None:
    """ragtune's default retriever (``tuned+hybrid``) against the best retriever the user had without ragtune.

    The best of BM25 alone, the base model fused with BM25 at its own fitted
    weight and the base model alone (where dense beats BM25, as on people's
    questions, that is the one to beat), by ``metric`` at full dimension on this very set.
    """
    if "tuned+hybrid" not in results:
        return None
    present = [label for label in WITHOUT_RAGTUNE if label in results]
    if not present:
        return None

    def value(label: str) -> float:
        by_dim = results[label].metrics
        return float(by_dim[full_dim(by_dim)][metric])

    against = max(present, key=lambda label: (value(label), -present.index(label)))
    return {
        "key": f"tuned+hybrid-{against}",
        "default": "tuned+hybrid",
        "against": against,
        "without_ragtune": {label: round(value(label), 4) for label in present},
        "metric": metric,
    }


def gained_and_lost(
    dataset: RetrievalDataset, tuned: EvalResult, base: EvalResult, n: int = 5, metric: str = "ndcg@10"
) -> dict[str, list[dict[str, Any]]]:
    """The queries whose ``metric`` rose and fell most, with what each model ranked first."""
    dim = max(tuned.per_query, key=int)
    if dim not in base.per_query:
        return {}
    diff = tuned.per_query[dim][metric] - base.per_query[dim][metric]
    order = np.argsort(diff, kind="stable")

    def item(i: int) -> dict[str, Any]:
        qid = tuned.qids[i]
        rel = dataset.relevant[qid]
        return {
            "query": dataset.queries[qid],
            "delta": round(float(diff[i]), 4),
            "relevant": [_snippet(dataset.corpus[d]) for d in list(rel)[:1]],
            "base_rank": _rank(base.rankings[dim][qid], rel),
            "tuned_rank": _rank(tuned.rankings[dim][qid], rel),
            "base_top": _snippet(dataset.corpus[base.rankings[dim][qid][0][0]]) if base.rankings[dim][qid] else "",
            "tuned_top": _snippet(dataset.corpus[tuned.rankings[dim][qid][0][0]]) if tuned.rankings[dim][qid] else "",
        }

    gained = [item(i) for i in order[::-1][:n] if diff[i] > 0]
    lost = [item(i) for i in order[:n] if diff[i] < 0]
    return {"metric": metric, "dim": dim, "gained": gained, "lost": lost}


def per_query_values(results: Mapping[str, EvalResult], metric: str = "ndcg@10") -> dict[str, Any]:
    """Each label's per-query ``metric`` at its full dimension, so the report can show how
    changes are distributed over queries (a mean hides whether a few queries moved a lot
    or many moved a little). Labels scored on other queries than the first are left out.
    """
    out: dict[str, Any] = {"metric": metric, "qids": [], "labels": {}}
    for label, r in results.items():
        if not r.per_query:
            continue
        dim = max(r.per_query, key=int)
        if metric not in r.per_query[dim]:
            continue
        if not out["qids"]:
            out["qids"] = list(r.qids)
        elif list(r.qids) != out["qids"]:
            continue
        values = [round(float(v), 4) for v in r.per_query[dim][metric]]
        out["labels"][label] = {"dim": dim, "values": values}
    return out


def _rank(ranking: list[tuple[str, float]], relevant: Mapping[str, int]) -> int | None:
    for r, (doc, _) in enumerate(ranking, 1):
        if doc in relevant:
            return r
    return None


def _snippet(text: str, n: int = 240) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1] + "…"


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and a self-contained ``report.html`` (atomic each)."""
    from ragtune.report.html import render_html
    from ragtune.report.markdown import render_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": write_json(out / "report.json", report),
        "md": write_text(out / "report.md", render_markdown(report)),
        "html": write_text(out / "report.html", render_html(report)),
    }
    return paths
