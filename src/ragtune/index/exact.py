"""Exact (brute-force) search over encoded chunks, plain or by best window.

Shared by evaluation (quality figures come from exact search, so that index
approximations never blur them) and by pair generation (round-trip filtering,
hard-negative mining); the Qdrant index is measured separately for latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.encoders.encoder import Encoder, WindowedVectors, truncate


@dataclass
class EncodedCorpus:
    """Corpus vectors at full width: one per document (plain) or one per window (long)."""

    ids: list[str]
    vectors: np.ndarray
    owner: np.ndarray | None = None  # window -> document index, sorted; None in plain mode

    @property
    def long(self) -> bool:
        return self.owner is not None


def encode_corpus(encoder: Encoder, ids: Sequence[str], texts: Sequence[str], long_chunks: bool) -> EncodedCorpus:
    if long_chunks:
        wv: WindowedVectors = encoder.encode_windows(texts)
        return EncodedCorpus(ids=list(ids), vectors=wv.vectors, owner=wv.owner)
    return EncodedCorpus(ids=list(ids), vectors=encoder.encode_documents(texts))


def score_matrix(queries: np.ndarray, corpus: EncodedCorpus, dim: int | None = None, batch: int = 256) -> np.ndarray:
    """``(n_queries, n_docs)`` cosine scores (a document's best window in long mode)."""
    docs = truncate(corpus.vectors, dim)
    q_all = truncate(queries, dim)
    starts = None
    if corpus.long:
        starts = np.flatnonzero(np.r_[True, np.diff(corpus.owner) != 0])
        if len(starts) != len(corpus.ids):
            raise ValueError("every document must have at least one window")
    out = np.empty((len(q_all), len(corpus.ids)), dtype=np.float32)
    for i in range(0, len(q_all), batch):
        sims = q_all[i : i + batch] @ docs.T
        out[i : i + batch] = np.maximum.reduceat(sims, starts, axis=1) if starts is not None else sims
    return out


def top_hits(scores: np.ndarray, ids: Sequence[str], top_k: int = 100) -> list[list[tuple[str, float]]]:
    """The ``top_k`` ``(id, score)`` of each row of a score matrix, best first (ties keep id order)."""
    k = min(top_k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    results = []
    for row, idx in zip(scores, top):
        order = idx[np.argsort(-row[idx], kind="stable")]
        results.append([(ids[j], float(row[j])) for j in order])
    return results


def exact_search(
    queries: np.ndarray, corpus: EncodedCorpus, dim: int | None = None, top_k: int = 100, batch: int = 256
) -> list[list[tuple[str, float]]]:
    """Top-``k`` documents per query by cosine similarity (best window in long mode)."""
    results: list[list[tuple[str, float]]] = []
    for i in range(0, len(queries), batch):
        results += top_hits(score_matrix(queries[i : i + batch], corpus, dim, batch), corpus.ids, top_k)
    return results
