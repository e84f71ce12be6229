"""Hard negatives for pairs: chunks a retriever ranks high for the query that are not its answer.

In-batch negatives are mostly easy (random chunks about other things); a
negative the base model already confuses with the positive teaches the
distinction that matters. Mining the very top of the ranking, though, picks up
*false* negatives — other chunks that also answer the query (repeated passages,
overlapping chunks, restated figures) — and training pushes the model away
from correct answers. Following NV-Retriever's positive-aware mining (Moreira
et al., 2024), a candidate is skipped when it scores within a margin of the
positive (or above it), and only ranks ``rank_range`` are considered.

Candidates come from the base encoder (best-window scoring, as long-chunk search
does), from BM25, or from both; with an encoder, a negative's text is its
best window for the query, the same kind of text a positive is.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ragtune.corpus.reader import Chunk
from ragtune.encoders.windows import WindowSpec
from ragtune.errors import ConfigError
from ragtune.pairs.filters import BM25ChunkIndex, DenseChunkIndex, positive_positions
from ragtune.pairs.schema import Pair


@dataclass
class MiningResult:
    """Pairs with ``negatives`` filled, and what mining did, for the run record."""

    pairs: list[Pair]
    retrievers: list[str]
    with_negatives: int = 0
    without_candidates: int = 0
    skipped_false_negatives: int = 0
    skipped_same_doc: int = 0
    kept_existing: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """Counts and settings as a JSON-able dict (``run.json``)."""
        return {
            "retrievers": self.retrievers,
            "pairs": len(self.pairs),
            "with_negatives": self.with_negatives,
            "without_candidates": self.without_candidates,
            "skipped_false_negatives": self.skipped_false_negatives,
            "skipped_same_doc": self.skipped_same_doc,
            "kept_existing": self.kept_existing,
            **self.settings,
        }


def mine_hard_negatives(
    pairs: Sequence[Pair],
    chunks: Sequence[Chunk] | None = None,
    encoder: Any = None,
    bm25: bool = False,
    num_negatives: int = 1,
    rank_range: tuple[int, int] = (3, 30),
    margin: float = 0.05,
    bm25_margin: float = 0.1,
    exclude_same_doc: bool = False,
    seed: int = 13,
    overwrite: bool = False,
    dense_index: DenseChunkIndex | None = None,
    bm25_index: BM25ChunkIndex | None = None,
    spec: WindowSpec | None = None,
    negative_text: str = "window",
) -> MiningResult:
    """Fill each pair's ``negatives`` with ``{"id", "text"}`` of hard, probably-wrong chunks.

    - ``encoder`` (an :class:`~ragtune.encoders.encoder.Encoder`, a ``SentenceTransformer``
      or a path) ranks chunks by best-window cosine; ``bm25=True`` adds BM25
      candidates. At least one is needed. Prebuilt ``dense_index`` /
      ``bm25_index`` (e.g. the round-trip filter's ``.index``) are reused.
    - ``rank_range=(lo, hi)``: 1-based ranks among chunks other than the
      positive that may be sampled; skipping the first ranks avoids most
      unlabelled positives, ``hi`` bounds how easy a negative may be.
    - False-negative guard: a candidate is skipped when its cosine is
      ``>= positive − margin`` (model) or its BM25 score ``>= positive × (1 −
      bm25_margin)`` (BM25, a fraction since BM25 has no fixed scale; 0.1
      covers a copy of the positive up to about a quarter longer, which BM25
      length normalisation scores up to ~10 % lower). Every active retriever
      judges every candidate. When the positive shares no word with the query,
      BM25 cannot judge: alone it skips every candidate that shares one, next
      to the model it leaves the call to the model.
    - ``exclude_same_doc`` also skips chunks from the positive's document
      (neighbouring chunks often restate the answer).
    - ``num_negatives`` are sampled uniformly from the eligible candidates with a
      seed per pair (``seed``, query, positive), so the result does not depend
      on the order or number of pairs; negatives are listed hardest first.
    - ``negative_text="window"``: a negative is the candidate's best window for
      the query (with an encoder; the whole chunk with BM25 alone), matching
      window positives; ``"chunk"`` gives whole chunks, matching whole-chunk
      positives (``GenerationConfig.positive="chunk"``).
    - Pairs that already carry negatives keep them unless ``overwrite``.

    The corpus is encoded once (one window pass) and all queries in one batch.
    Returns a :class:`MiningResult` — ``.pairs`` are new objects, the input is not modified.
    """
    _check_settings(num_negatives, rank_range, margin, bm25_margin)
    if negative_text not in ("window", "chunk"):
        raise ConfigError(f"negative_text={negative_text!r}: choose 'window' or 'chunk'")
    dense_index = _dense(chunks, encoder, dense_index, spec)
    bm25_index = _bm25(chunks, bm25, bm25_index)
    if dense_index is None and bm25_index is None:
        raise ConfigError(
            "mine_hard_negatives: no retriever; pass encoder= (a base model) and/or bm25=True"
        )
    if dense_index is not None and bm25_index is not None and dense_index.ids != bm25_index.ids:
        raise ConfigError(
            "dense_index, bm25_index: built over different chunks; build both from the same chunks"
        )
    miner = _Miner(
        dense=dense_index,
        bm25=bm25_index,
        num_negatives=num_negatives,
        rank_range=(int(rank_range[0]), int(rank_range[1])),
        margin=margin,
        bm25_margin=bm25_margin,
        exclude_same_doc=exclude_same_doc,
        seed=seed,
        whole_chunks=negative_text == "chunk",
    )
    result = MiningResult(pairs=list(pairs), retrievers=miner.retrievers, settings=miner.settings())
    todo = [i for i, p in enumerate(pairs) if overwrite or not p.negatives]
    result.kept_existing = len(pairs) - len(todo)
    if todo:
        mined = miner.run([pairs[i] for i in todo], result)
        for i, negatives in zip(todo, mined):
            result.pairs[i] = replace(pairs[i], negatives=negatives)
            result.with_negatives += bool(negatives)
        result.without_candidates = len(todo) - result.with_negatives
    return result


def _check_settings(
    num_negatives: int, rank_range: tuple[int, int], margin: float, bm25_margin: float
) -> None:
    if num_negatives < 1:
        raise ConfigError(f"num_negatives={num_negatives}: must be >= 1")
    lo, hi = rank_range
    if not 1 <= lo <= hi:
        raise ConfigError(
            f"rank_range={tuple(rank_range)}: need 1 <= lo <= hi (1-based ranks, e.g. (3, 30))"
        )
    if margin < 0:
        raise ConfigError(f"margin={margin}: must be >= 0 (a cosine gap below the positive's score)")
    if not 0 <= bm25_margin < 1:
        raise ConfigError(
            f"bm25_margin={bm25_margin}: must be in [0, 1) (a fraction of the positive's BM25 score)"
        )


def _dense(
    chunks: Sequence[Chunk] | None, encoder: Any, index: DenseChunkIndex | None, spec: WindowSpec | None
) -> DenseChunkIndex | None:
    if index is not None or encoder is None:
        return index
    if chunks is None:
        raise ConfigError("chunks: none given; pass the corpus chunks (or a prebuilt dense_index=)")
    return DenseChunkIndex(chunks, encoder, spec)


def _bm25(
    chunks: Sequence[Chunk] | None, use: bool, index: BM25ChunkIndex | None
) -> BM25ChunkIndex | None:
    if index is not None or not use:
        return index
    if chunks is None:
        raise ConfigError("chunks: none given; pass the corpus chunks (or a prebuilt bm25_index=)")
    return BM25ChunkIndex(chunks)


@dataclass
class _Miner:
    """The active retrievers and the settings; mines a list of pairs in query batches.

    Query vectors (one batch) and the dense top ranks are kept for all pairs; BM25
    scores every chunk, so its rows are computed and dropped per batch of
    ``batch_size`` queries to bound memory on large corpora.
    """

    dense: DenseChunkIndex | None
    bm25: BM25ChunkIndex | None
    num_negatives: int
    rank_range: tuple[int, int]
    margin: float
    bm25_margin: float
    exclude_same_doc: bool
    seed: int
    whole_chunks: bool = False
    batch_size: int = 256
    qvecs: np.ndarray | None = None
    dense_hits: list[list[tuple[str, float]]] | None = None

    @property
    def ref(self) -> DenseChunkIndex | BM25ChunkIndex:
        return self.dense if self.dense is not None else self.bm25  # type: ignore[return-value]

    @property
    def retrievers(self) -> list[str]:
        return [i.kind for i in (self.dense, self.bm25) if i is not None]

    def settings(self) -> dict[str, Any]:
        return {
            "num_negatives": self.num_negatives,
            "rank_range": list(self.rank_range),
            "margin": self.margin,
            "bm25_margin": self.bm25_margin,
            "exclude_same_doc": self.exclude_same_doc,
            "seed": self.seed,
            "negative_text": "chunk" if self.whole_chunks else "window",
        }

    def run(self, pairs: Sequence[Pair], result: MiningResult) -> list[list[dict[str, str]]]:
        positives = positive_positions(pairs, self.ref.positions)
        if self.dense is not None:
            self.qvecs = self.dense.encode_queries([p.query for p in pairs])
            self.dense_hits = self.dense.search(self.qvecs, top_k=self.rank_range[1] + 1)
        out: list[list[dict[str, str]]] = []
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start : start + self.batch_size]
            rows = self.bm25.scores([p.query for p in batch]) if self.bm25 is not None else None
            for off, p in enumerate(batch):
                row = rows[off] if rows is not None else None
                out.append(self._mine(start + off, p, int(positives[start + off]), row, result))
        return out

    def _mine(
        self, j: int, pair: Pair, positive: int, bm25_row: np.ndarray | None, result: MiningResult
    ) -> list[dict[str, str]]:
        """Negatives for query ``j``: candidates in rank range, minus guarded ones, a seeded sample."""
        chunks = self.ref.chunks
        guard = self._guard(j, positive, bm25_row)
        eligible: list[tuple[int, int]] = []  # (rank, chunk index)
        candidates = self._candidates(j, positive, bm25_row)
        for cand, rank in sorted(candidates.items(), key=lambda kv: (kv[1], kv[0])):
            if self.exclude_same_doc and chunks[cand].doc_id == chunks[positive].doc_id:
                result.skipped_same_doc += 1
            elif guard(cand):
                result.skipped_false_negatives += 1
            else:
                eligible.append((rank, cand))
        if not eligible:
            return []
        rng = random.Random(f"{self.seed}\x1f{pair.positive_id}\x1f{pair.query}")
        picked = sorted(rng.sample(eligible, min(self.num_negatives, len(eligible))))
        return [{"id": chunks[c].id, "text": self._text(j, c)} for _, c in picked]

    def _candidates(self, j: int, positive: int, bm25_row: np.ndarray | None) -> dict[int, int]:
        """Chunk index → best rank (1-based, positive excluded) in ``rank_range`` of any retriever."""
        lo, hi = self.rank_range
        rankings: list[list[int]] = []
        if self.dense_hits is not None:
            rankings.append([self.ref.positions[cid] for cid, _ in self.dense_hits[j]])
        if bm25_row is not None:
            rankings.append(_bm25_ranking(bm25_row, hi + 1))
        found: dict[int, int] = {}
        for ranking in rankings:
            others = [c for c in ranking if c != positive]
            for rank, c in enumerate(others[lo - 1 : hi], start=lo):
                found[c] = min(rank, found.get(c, rank))
        return found

    def _guard(self, j: int, positive: int, bm25_row: np.ndarray | None) -> Callable[[int], bool]:
        """The false-negative test for query ``j``: does a retriever score a candidate near the positive?"""
        dense_own = self.dense.chunk_score(self.qvecs[j], positive)[0] if self.dense is not None else 0.0
        bm25_own = float(bm25_row[positive]) if bm25_row is not None else 0.0

        def likely_positive(cand: int) -> bool:
            if self.dense is not None:
                if self.dense.chunk_score(self.qvecs[j], cand)[0] >= dense_own - self.margin:
                    return True
            if bm25_row is not None:
                other = float(bm25_row[cand])
                if bm25_own > 0 and other >= bm25_own * (1 - self.bm25_margin):
                    return True
                if bm25_own <= 0 and other > 0 and self.dense is None:
                    return True
            return False

        return likely_positive

    def _text(self, j: int, cand: int) -> str:
        """The candidate's best window for this query (the whole chunk when there is no encoder)."""
        if self.dense is None or self.whole_chunks:
            return self.ref.chunks[cand].text
        _, window = self.dense.chunk_score(self.qvecs[j], cand)
        return self.dense.window_text(cand, window)


def _bm25_ranking(row: np.ndarray, k: int) -> list[int]:
    """The ``k`` best-scoring chunk indices, best first; chunks sharing no word are left out."""
    k = min(k, len(row))
    top = np.argpartition(-row, k - 1)[:k]
    top = top[np.lexsort((top, -row[top]))]
    return [int(c) for c in top if row[c] > 0]
