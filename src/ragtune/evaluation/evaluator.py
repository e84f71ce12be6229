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
from ragtune.index.exact import encode_corpus, score_matrix, top_hits
from ragtune.index.fusion import HybridConfig, fuse_scores
from ragtune.index.lexical import Lexical, LexicalConfig, bm25_scores, fitted_config
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
    #: full-width ``(n_queries, n_docs)`` scores in ``qids`` × corpus order (kept for fusion), or None
    scores: np.ndarray | None = field(default=None, repr=False)


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
        full = None
        for dim in dims:
            ts = time.perf_counter()
            scores = score_matrix(qvecs, corpus, dim=dim)
            if dim >= encoder.dimension:
                full = scores
            hits = top_hits(scores, doc_ids, self.top_k)
            search_s += time.perf_counter() - ts
            metrics[str(dim)], per_query[str(dim)], rankings[str(dim)] = self._score(qids, hits)
        t3 = time.perf_counter()
        return EvalResult(
            label=label,
            metrics=metrics,
            per_query=per_query,
            rankings=rankings,
            scores=full,
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

    def _score(self, qids: Sequence[str], hits: Sequence[Sequence[tuple[str, float]]]) -> tuple[Any, Any, Any]:
        ranking = dict(zip(qids, hits))
        means, per = compute_metrics(self.dataset.relevant, ranking, self.metrics)
        return means, per, {q: list(r[:10]) for q, r in ranking.items()}

    def from_scores(self, scores: np.ndarray, label: str, dim: str, seconds: dict[str, float]) -> EvalResult:
        """An :class:`EvalResult` of a ready ``(n_queries, n_docs)`` score matrix (BM25, a fusion)."""
        qids = sorted(self.dataset.queries)
        hits = top_hits(scores, list(self.dataset.corpus), self.top_k)
        means, per, ranks = self._score(qids, hits)
        return EvalResult(label=label, metrics={dim: means}, per_query={dim: per}, rankings={dim: ranks},
                          qids=qids, seconds=seconds, scores=scores)


def bm25_matrix(dataset: RetrievalDataset, config: LexicalConfig | None = None) -> tuple[np.ndarray, LexicalConfig]:
    """Exact BM25 scores of every query against every document, as ragtune's index computes them.

    ``config`` defaults to one fitted on the corpus (its language, its average length).
    """
    doc_ids = list(dataset.corpus)
    texts = [dataset.corpus[d] for d in doc_ids]
    config = config or fitted_config(texts)
    lex = Lexical(config)
    qids = sorted(dataset.queries)
    return bm25_scores(lex.documents(texts), [lex.query(dataset.queries[q]) for q in qids]), config


def evaluate_models(
    dataset: RetrievalDataset,
    models: Mapping[str, Any],
    dims: Sequence[int] | None = None,
    long_chunks: bool = True,
    batch_size: int = 64,
    plain_only: Collection[str] = (),
    lexical: bool = True,
    hybrid: Mapping[str, HybridConfig] | None = None,
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
        lexical: also score BM25 alone (``bm25``) and each model fused with it
            (``{label}+hybrid``: its best window, or plain without ``long_chunks``,
            fused as :func:`ragtune.index.fusion.fuse_scores` does in search).
        hybrid: label → the fusion of ``{label}+hybrid`` (default: ``HybridConfig()``).

    Returns:
        label → :class:`EvalResult`: every plain label first, then the ``+long`` ones,
        then ``bm25`` and the ``+hybrid`` ones.

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
    if lexical:
        scorer = RetrievalEvaluator(dataset)
        with task("Evaluating bm25"):
            t0 = time.perf_counter()
            bm25, config = bm25_matrix(dataset)
            bm25_s = round(time.perf_counter() - t0, 3)
            first = next(iter(results.values()), None)
            dim = full_dim(first.metrics) if first is not None else "0"
            results["bm25"] = scorer.from_scores(bm25, "bm25", dim, {"search_s": bm25_s, **config.to_meta()})
        for label in encoders:
            dense = results.get(f"{label}+long") or results.get(label)
            if label in plain_only or dense is None or dense.scores is None:
                continue
            fusion = (hybrid or {}).get(label) or HybridConfig()
            with task(f"Evaluating {label}+hybrid"):
                fused = fuse_scores(dense.scores, bm25, fusion.alpha, fusion.candidates)
                results[f"{label}+hybrid"] = scorer.from_scores(
                    fused, f"{label}+hybrid", full_dim(dense.metrics),
                    {"alpha": fusion.alpha, "candidates": fusion.candidates},
                )
    return results


def full_dim(by_dim: Mapping[str, Any]) -> str:
    """The widest dimension of a ``dim -> ...`` mapping (the un-truncated model)."""
    return max(by_dim, key=int)


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
