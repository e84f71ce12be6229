"""Speed and quality of each form of a model, measured side by side.

One home for what ``ragtune run --export`` puts in the report's "speed"
section and what ``eval/speed.py`` writes: for the torch model and every form
``ragtune export`` made of it (ONNX / OpenVINO, fp32 / int8, the static
student), on one retrieval dataset and one machine, one form after another:

- quality: nDCG@10 and hit@5, plain (first window) and best-window, by
  :func:`ragtune.evaluation.evaluate_models` (exact search);
- documents per second: the dataset's chunk windows (what a best-window index
  embeds), after a warm-up batch;
- single-query latency p50 / p95: one query a call, as a server sees them;
- load time and size on disk.

Example:
    >>> from ragtune.evaluation import load_llamaindex
    >>> from ragtune.evaluation.speed import measure_forms
    >>> ds = load_llamaindex("uber_val_pairs.json")
    >>> rows = measure_forms("runs/uber/model", ["torch", "onnx-int8", "static"], ds)
    >>> [(r["form"], r["x_torch_docs_per_s"]) for r in rows]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.evaluation.datasets import RetrievalDataset
from ragtune.evaluation.evaluator import evaluate_models
from ragtune.progress import track

FIRST = "torch"
METRICS = ("ndcg@10", "hit@5")


def form_files(model_dir: str | Path, form: str, path: str | Path | None = None) -> tuple[Path, int]:
    """(what the form loads from, its size on disk in bytes): the exported file (+ weights), or a folder."""
    from ragtune.encoders.runtime import backend_of, default_file, static_folder

    model_dir = Path(model_dir)
    if form == FIRST:
        target = model_dir
        files = list(model_dir.glob("*.safetensors"))
    elif form == "static":
        target = Path(path) if path else static_folder(model_dir)
        files = [f for f in target.rglob("*") if f.is_file()]
    else:
        target = Path(path) if path else default_file(model_dir, backend_of(form))
        files = [target] + ([target.with_suffix(".bin")] if target.suffix == ".xml" else [])
    return target, sum(f.stat().st_size for f in files if f.exists())


def load_form(model_dir: str | Path, form: str, path: str | Path | None = None) -> Any:
    """The model in ``form`` as a SentenceTransformer (a static student is its own folder)."""
    from ragtune.encoders.loading import load_model
    from ragtune.encoders.runtime import backend_of

    target, _ = form_files(model_dir, form, path)
    if form in (FIRST, "static"):
        return load_model(target)
    return load_model(model_dir, backend=backend_of(form), file=target)


def measure_forms(
    model_dir: str | Path,
    forms: Sequence[str],
    dataset: RetrievalDataset,
    paths: Mapping[str, str | Path] | None = None,
    queries: int = 200,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Measure each form of ``model_dir`` on ``dataset``; ratios are to the torch row when it is measured.

    Args:
        model_dir: the tuned (or any) sentence-transformers folder the forms were exported from.
        forms: ``torch`` and names from :data:`ragtune.encoders.runtime.FORMATS`, measured in this order.
        dataset: queries, corpus and relevance used for quality; its corpus windows are what docs/s encodes.
        paths: a form's file (or the static student's folder) when not the default one.
        queries: how many of the dataset's queries time single-query latency.
        batch_size: encoding batch for docs/s.

    Returns:
        One dict per form: form, file, load_s, docs_per_s, query_p50_ms, query_p95_ms, size_mb,
        plain / windows ({ndcg@10, hit@5}), and x_torch_docs_per_s / ndcg_delta_plain /
        ndcg_delta_windows when torch is among the forms.
    """
    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.windows import batch_window_spans

    model_dir = Path(model_dir)
    paths = dict(paths or {})
    corpus = list(dataset.corpus.values())
    sample = [dataset.queries[q] for q in sorted(dataset.queries)][:queries]
    windows: list[str] | None = None
    rows = []
    for form in track(list(forms), "Measuring forms", unit="forms"):
        target, size = form_files(model_dir, form, paths.get(form))
        t0 = time.perf_counter()
        enc = Encoder(load_form(model_dir, form, paths.get(form)), batch_size=batch_size)
        load_s = time.perf_counter() - t0
        if windows is None:  # the transformer's windows; every form encodes the same texts
            spans = batch_window_spans(corpus, enc.tokenizer, enc.window_spec())
            windows = [text[a:b] for text, sp in zip(corpus, spans) for a, b in sp]
        enc.encode_documents(windows[:batch_size])  # warm-up: first-call allocations, kernel choice
        t0 = time.perf_counter()
        enc.encode_documents(windows)
        docs_s = len(windows) / (time.perf_counter() - t0)
        latency = []
        for q in sample:
            t1 = time.perf_counter()
            enc.encode_queries([q])
            latency.append((time.perf_counter() - t1) * 1000)
        quality = evaluate_models(dataset, {form: enc}, dims=None, long_chunks=True)
        dim = str(enc.dimension)
        rows.append({
            "form": form,
            "file": _relative(target, model_dir),
            "load_s": round(load_s, 2),
            "docs_per_s": round(docs_s, 1),
            "query_p50_ms": round(float(np.percentile(latency, 50)), 2) if latency else None,
            "query_p95_ms": round(float(np.percentile(latency, 95)), 2) if latency else None,
            "size_mb": round(size / 2**20, 1),
            "texts_encoded": len(windows),
            "plain": {k: quality[form].metrics[dim][k] for k in METRICS},
            "windows": {k: quality[f"{form}+long"].metrics[dim][k] for k in METRICS},
        })
    first = next((r for r in rows if r["form"] == FIRST), None)
    if first:
        for r in rows:
            r["x_torch_docs_per_s"] = round(r["docs_per_s"] / first["docs_per_s"], 2)
            r["ndcg_delta_plain"] = round(r["plain"]["ndcg@10"] - first["plain"]["ndcg@10"], 4)
            r["ndcg_delta_windows"] = round(r["windows"]["ndcg@10"] - first["windows"]["ndcg@10"], 4)
    return rows


def _relative(target: Path, model_dir: Path) -> str:
    """A form's file as the user sees it beside the model: ``onnx/model_qint8_avx512_vnni.onnx``, ``model-static/``."""
    if target == model_dir:
        return "model.safetensors"
    try:
        return str(target.relative_to(model_dir))
    except ValueError:
        return target.name + ("/" if target.is_dir() else "")
