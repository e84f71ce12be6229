"""Fit hybrid search's fusion for one model on held-out pairs: the weight every searcher then reads.

The pipeline calls :func:`fit_hybrid` after training (for the tuned model and
for the base model it is compared with), on the held-out split of the
generated pairs searched over every chunk of the run — the same queries the
WiSE-FT mix is chosen on. Scores are exact (best window, BM25 as the index
computes it), fused exactly as search fuses them
(:func:`ragtune.index.fusion.fuse_scores`), and the weight is chosen by
:func:`ragtune.index.fusion.fit_alpha`, whose guards keep it from
over-trusting BM25 on synthetic questions.

Example:
    >>> config = fit_hybrid(Encoder(model), held_out)  # doctest: +SKIP
    >>> write_hybrid("runs/demo/model", config)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ragtune.encoders.encoder import Encoder
from ragtune.evaluation.datasets import RetrievalDataset
from ragtune.evaluation.evaluator import RetrievalEvaluator, bm25_matrix
from ragtune.evaluation.metrics import compute_metrics
from ragtune.index.exact import top_hits
from ragtune.index.fusion import MIN_ALPHA, HybridConfig, fit_alpha
from ragtune.progress import task

#: fewer held-out queries than this cannot choose a weight: the default is kept
MIN_FIT_QUERIES = 20


def fit_hybrid(
    model: Any,
    dataset: RetrievalDataset,
    candidates: int = 50,
    min_alpha: float = MIN_ALPHA,
    long_chunks: bool = True,
    bm25: np.ndarray | None = None,
) -> HybridConfig:
    """The fusion weight for ``model`` on ``dataset`` (held-out pairs), or the default with too few queries.

    Args:
        model: an :class:`~ragtune.encoders.encoder.Encoder` or anything it wraps.
        dataset: held-out queries over the run's chunks.
        candidates: each side's list length, as search uses it.
        min_alpha: the floor on the dense weight (see :func:`~ragtune.index.fusion.fit_alpha`).
        long_chunks: fuse the best-window scores (as search does) rather than plain ones.
        bm25: the dataset's exact BM25 scores when already computed (:func:`bm25_matrix`),
            so fitting several models on one dataset scores BM25 once.
    """
    if len(dataset.queries) < MIN_FIT_QUERIES:
        return HybridConfig(candidates=candidates, fitted={
            "by": "default", "reason": f"{len(dataset.queries)} held-out queries, need {MIN_FIT_QUERIES} to fit"})
    with task("Fitting the hybrid fusion"):
        dense = RetrievalEvaluator(dataset, long_chunks=long_chunks)(model if isinstance(model, Encoder) else Encoder(model))
        if bm25 is None:
            bm25, _ = bm25_matrix(dataset)
        qids = sorted(dataset.queries)
        ids = list(dataset.corpus)

        def ndcg(scores: np.ndarray) -> np.ndarray:
            _, per = compute_metrics(dataset.relevant, dict(zip(qids, top_hits(scores, ids, 10))), ["ndcg@10"])
            return per["ndcg@10"]

        return fit_alpha(dense.scores, bm25, ndcg, candidates=candidates, min_alpha=min_alpha)
