"""The retrieval evaluator: a callable that scores one model on one dataset.

``RetrievalEvaluator(dataset, dims=[384, 64])(model, label="tuned")`` encodes
the corpus once at full width, derives every Matryoshka dimension from those
vectors, searches exactly, and returns means, per-query values and rankings
(for the report's gained/lost queries).
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtune.encoders.encoder import Encoder
from ragtune.evaluation.datasets import RetrievalDataset
from ragtune.evaluation.metrics import METRICS, compute_metrics, paired_bootstrap
from ragtune.index.exact import encode_corpus, exact_search
from ragtune.progress import task


@dataclass
class EvalResult:
    label: str
    metrics: dict[str, dict[str, float]]  # dim (str) -> metric -> mean
    per_query: dict[str, dict[str, np.ndarray]] = field(repr=False)
    rankings: dict[str, dict[str, list[tuple[str, float]]]] = field(repr=False)  # dim -> qid -> top-k
    qids: list[str] = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)
    long_chunks: bool = False


class RetrievalEvaluator:
    """Score a model on a :class:`RetrievalDataset` with exact search."""

    def __init__(
        self,
        dataset: RetrievalDataset,
        dims: Sequence[int] | None = None,
        long_chunks: bool = False,
        top_k: int = 100,
        batch_size: int = 64,
        metrics: Sequence[str] = tuple(METRICS),
    ) -> None:
        self.dataset = dataset
        self.dims = list(dims) if dims else None
        self.long_chunks = long_chunks
        self.top_k = top_k
        self.batch_size = batch_size
        self.metrics = list(metrics)

    def __call__(self, model: Any, label: str = "model") -> EvalResult:
        encoder = model if isinstance(model, Encoder) else Encoder(model, self.batch_size)
        ds = self.dataset
        doc_ids = list(ds.corpus)
        qids = sorted(ds.queries)
        t0 = time.perf_counter()
        corpus = encode_corpus(encoder, doc_ids, [ds.corpus[d] for d in doc_ids], self.long_chunks)
        t1 = time.perf_counter()
        qvecs = encoder.encode_queries([ds.queries[q] for q in qids])
        t2 = time.perf_counter()
        dims = self.dims or [encoder.dimension]
        metrics, per_query, rankings = {}, {}, {}
        search_s = 0.0
        for dim in dims:
            ts = time.perf_counter()
            hits = exact_search(qvecs, corpus, dim=dim, top_k=self.top_k)
            search_s += time.perf_counter() - ts
            ranking = dict(zip(qids, hits))
            means, per = compute_metrics(ds.relevant, ranking, self.metrics)
            metrics[str(dim)] = means
            per_query[str(dim)] = per
            rankings[str(dim)] = {q: r[:10] for q, r in ranking.items()}
        t3 = time.perf_counter()
        return EvalResult(
            label=label,
            metrics=metrics,
            per_query=per_query,
            rankings=rankings,
            qids=qids,
            seconds={
                "encode_corpus_s": round(t1 - t0, 3),
                "encode_queries_s": round(t2 - t1, 3),
                "search_s": round(search_s, 3),
                "metrics_s": round(t3 - t2 - search_s, 3),
                "corpus_units": len(corpus.vectors),
            },
            long_chunks=self.long_chunks,
        )


def evaluate_models(
    dataset: RetrievalDataset,
    models: Mapping[str, Any],
    dims: Sequence[int] | None = None,
    long_chunks: bool = True,
    batch_size: int = 64,
    plain_only: Collection[str] = (),
) -> dict[str, EvalResult]:
    """Every model × search mode × dimension on one dataset: the one evaluation loop.

    The pipeline's evaluate stage, ``ragtune evaluate`` and the ``eval/``
    benchmarks all call this, so their figures are computed the same way.

    Args:
        dataset: queries, corpus and relevance labels.
        models: label → model (a folder, hub id, ``default``, a loaded
            ``SentenceTransformer`` or an :class:`Encoder`). Each distinct model
            loads once and serves both modes.
        dims: Matryoshka dimensions to score (default: each model's full width).
        long_chunks: also score each chunk by its best window, as ``{label}+long``.
        batch_size: encoding batch size.
        plain_only: labels scored in plain mode only and at their own full width
            (a hosted baseline: no windows, and ``dims`` belong to the other models).

    Returns:
        label → :class:`EvalResult`: every plain label first, then the ``+long`` ones.

    Example:
        >>> results = evaluate_models(ds, {"base": "default", "tuned": "runs/demo/model"}, dims=[384, 64])  # doctest: +SKIP
        >>> results["tuned+long"].metrics["384"]["ndcg@10"]  # doctest: +SKIP
    """
    loaded: dict[str, Encoder] = {}  # one Encoder per distinct model, shared by its labels
    encoders: dict[str, Encoder] = {}
    for label, model in models.items():
        if isinstance(model, Encoder):
            encoders[label] = model
            continue
        key = str(model) if model is None or isinstance(model, (str, os.PathLike)) else f"object-{id(model)}"
        if key not in loaded:
            loaded[key] = Encoder(model, batch_size)
        encoders[label] = loaded[key]
    modes = (False, True) if long_chunks else (False,)
    results: dict[str, EvalResult] = {}
    for long in modes:
        for label, encoder in encoders.items():
            if long and label in plain_only:
                continue
            name = f"{label}+long" if long else label
            own = None if label in plain_only else dims
            with task(f"Evaluating {name}"):
                results[name] = RetrievalEvaluator(dataset, dims=own, long_chunks=long, batch_size=batch_size)(encoder, name)
    return results


def compare(
    tuned: EvalResult, base: EvalResult, metrics: Sequence[str] = ("ndcg@10", "hit@5", "mrr@10")
) -> dict[str, dict[str, dict[str, float]]]:
    """Paired bootstrap CI and p-value (read off the same bootstrap) of ``tuned - base`` per dim and metric."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for dim in tuned.per_query:
        if dim not in base.per_query:
            continue
        out[dim] = {
            m: paired_bootstrap(tuned.per_query[dim][m], base.per_query[dim][m])
            for m in metrics
            if m in tuned.per_query[dim]
        }
    return out
