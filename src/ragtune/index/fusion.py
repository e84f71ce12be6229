"""Hybrid search: fuse the dense (best-window) and BM25 candidate lists into one ranking.

Both lists come from the engine (each side's top ``candidates``); each list's
scores are min-max normalised to [0, 1] and summed with weights ``alpha``
(dense) and ``1 - alpha`` (BM25); a chunk missing from one list gets 0 on that
side. This is LlamaIndex's relative-score fusion (``QueryFusionRetriever``,
``mode="relative_score"``) with a fitted weight instead of a fixed one. It runs
in ragtune over the two lists, so every engine (Qdrant Edge, a Qdrant server,
qdrant-client's local mode) ranks alike, and :func:`fuse_scores` computes the
very same thing over exact score matrices for evaluation and fitting.

The weight is fitted per model on held-out validation pairs
(:func:`fit_alpha`) and written beside the model (:data:`HYBRID_FILE`); every
searcher reads it with :func:`read_hybrid`.

Example:
    >>> fuse([("a", 0.9), ("b", 0.5)], [("b", 12.0), ("c", 3.0)], alpha=0.5, top_k=2)
    [('a', 0.5), ('b', 0.5)]
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune._io import write_json

#: the file beside a model that holds its fitted fusion
HYBRID_FILE = "ragtune_hybrid.json"
#: search modes: ``hybrid`` (the default), ``dense`` (best window), ``sparse`` (BM25), ``plain`` (one vector a chunk)
MODES = ("hybrid", "dense", "sparse", "plain")
#: dense weights a fit tries
ALPHAS = tuple(round(a, 2) for a in np.arange(0.0, 1.0001, 0.05))
#: the guard against over-trusting BM25 (see fit_alpha): never below this dense weight
MIN_ALPHA = 0.5


@dataclass(frozen=True)
class HybridConfig:
    """How hybrid search fuses its two lists.

    Args:
        alpha: the dense side's weight (BM25 gets ``1 - alpha``).
        candidates: how many chunks each side contributes before fusion.
        fitted: how ``alpha`` was chosen (``default``, or the fit's figures).
    """

    alpha: float = 0.6
    candidates: int = 50
    fitted: dict[str, Any] = field(default_factory=lambda: {"by": "default"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            from ragtune.errors import InputError

            raise InputError(f"alpha={self.alpha}: the dense weight must be between 0 and 1")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_hybrid(model_dir: str | Path | None) -> HybridConfig:
    """The fusion fitted for the model in ``model_dir`` (:data:`HYBRID_FILE`), or the default one."""
    if model_dir is None:
        return HybridConfig()
    path = Path(model_dir) / HYBRID_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return HybridConfig()
    return HybridConfig(
        alpha=float(data.get("alpha", 0.6)),
        candidates=int(data.get("candidates", 50)),
        fitted=dict(data.get("fitted") or {"by": "file"}),
    )


def write_hybrid(model_dir: str | Path, config: HybridConfig) -> Path:
    path = Path(model_dir) / HYBRID_FILE
    write_json(path, config.to_json())
    return path


def _minmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi - lo <= 1e-12:
        return [1.0 for _ in scores]
    return [(s - lo) / (hi - lo) for s in scores]


def fuse(
    dense: Sequence[tuple[str, float]],
    sparse: Sequence[tuple[str, float]],
    alpha: float,
    top_k: int,
) -> list[tuple[str, float]]:
    """``alpha`` · minmax(dense) + (1 − ``alpha``) · minmax(sparse) over the union of two ranked lists."""
    fused: dict[str, float] = {}
    for weight, hits in ((alpha, dense), (1.0 - alpha, sparse)):
        for (cid, _), norm in zip(hits, _minmax([s for _, s in hits])):
            fused[cid] = fused.get(cid, 0.0) + weight * norm
    ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(cid, round(s, 6)) for cid, s in ranked[:top_k]]


def fuse_scores(dense: np.ndarray, sparse: np.ndarray, alpha: float, candidates: int) -> np.ndarray:
    """:func:`fuse` over exact ``(n_queries, n_docs)`` score matrices: fused scores, 0 outside both lists.

    Each row keeps the top ``candidates`` of each side, as the engine's two lists would.
    """
    out = np.zeros_like(dense, dtype=np.float64)
    n = dense.shape[1]
    c = min(candidates, n)
    for side, weight in ((dense, alpha), (sparse, 1.0 - alpha)):
        top = np.argpartition(-side, c - 1, axis=1)[:, :c] if c < n else np.tile(np.arange(n), (len(side), 1))
        vals = np.take_along_axis(side, top, axis=1).astype(np.float64)
        lo, hi = vals.min(axis=1, keepdims=True), vals.max(axis=1, keepdims=True)
        span = hi - lo
        norm = np.where(span > 1e-12, (vals - lo) / np.where(span > 1e-12, span, 1.0), 1.0)
        np.add.at(out, (np.arange(len(side))[:, None], top), weight * norm)
    return out


def fit_alpha(
    dense: np.ndarray,
    sparse: np.ndarray,
    score: Any,
    candidates: int = 50,
    alphas: Sequence[float] = ALPHAS,
    min_alpha: float = MIN_ALPHA,
) -> HybridConfig:
    """Choose the dense weight on validation queries, guarded against over-trusting BM25.

    Synthetic validation questions copy their passage's words far more than
    people's questions do, so BM25 looks stronger on them than it is on real
    traffic (measured: the best weight on synthetic Uber questions leans to
    BM25; on dbpedia's human queries it leans dense). Two guards follow:

    - a floor: the dense weight never drops below ``min_alpha`` (0.5: BM25 at
      most an equal share);
    - a prior toward the dense side: among weights within one standard error
      of the best validation nDCG@10, the most dense one is taken.

    Args:
        dense, sparse: ``(n_queries, n_docs)`` exact scores of the validation queries.
        score: ``score(fused_matrix) -> per-query nDCG@10 array``.
        candidates: each side's list length, as search uses it.
        alphas: the weights tried.
        min_alpha: the floor on the dense weight.
    """
    tried = {}
    per = {}
    for a in alphas:
        if a < min_alpha:
            continue
        values = np.asarray(score(fuse_scores(dense, sparse, a, candidates)), dtype=np.float64)
        per[a] = values
        tried[a] = float(values.mean())
    best = max(tried, key=lambda a: (tried[a], a))
    v = per[best]
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    chosen = max(a for a in tried if tried[a] >= tried[best] - se)
    return HybridConfig(
        alpha=float(chosen),
        candidates=candidates,
        fitted={
            "by": "validation pairs",
            "queries": len(v),
            "best_alpha": float(best),
            "best_ndcg@10": round(tried[best], 4),
            "chosen_ndcg@10": round(tried[chosen], 4),
            "standard_error": round(se, 4),
            "min_alpha": min_alpha,
            "ndcg@10_by_alpha": {f"{a:.2f}": round(s, 4) for a, s in sorted(tried.items())},
        },
    )
