"""Filters over generated pairs; each returns the kept pairs and how many it dropped.

The counts go into ``run.json`` so a user can see what generation threw away.
Cheap text filters (:class:`LengthFilter`, :class:`DuplicateFilter`) run first;
:class:`RoundTripFilter` and :class:`NearDuplicateFilter` need an index or an
encoder and are opt-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragtune.corpus.reader import Chunk
from ragtune.encoders.encoder import Encoder
from ragtune.encoders.windows import WindowSpec
from ragtune.errors import ConfigError, InputError
from ragtune.index.exact import EncodedCorpus, exact_search
from ragtune.pairs.schema import Pair
from ragtune.pairs.text import STOPWORDS, content_words, normalize_query, words


@dataclass
class LengthFilter:
    """Drop queries that are too short to mean anything or too long to be a query."""

    min_words: int = 2
    max_words: int = 64
    name: str = "length"

    def __call__(self, pairs: Sequence[Pair]) -> list[Pair]:
        return [p for p in pairs if self.min_words <= len(words(p.query)) <= self.max_words and p.positive.strip()]


@dataclass
class DuplicateFilter:
    """Drop exact and near-duplicate queries (same words, or the same set of content words).

    Two identical queries with different positives would teach the model two
    contradictory answers; the first one seen is kept.
    """

    name: str = "duplicates"

    def __call__(self, pairs: Sequence[Pair]) -> list[Pair]:
        seen_exact: set[str] = set()
        seen_bag: set[frozenset[str]] = set()
        out = []
        for p in pairs:
            norm = normalize_query(p.query)
            bag = frozenset(w.lower() for w in content_words(p.query))
            if norm in seen_exact or (len(bag) >= 2 and bag in seen_bag):
                continue
            seen_exact.add(norm)
            if len(bag) >= 2:
                seen_bag.add(bag)
            out.append(p)
        return out


def apply_filters(pairs: Sequence[Pair], filters: Sequence) -> tuple[list[Pair], dict[str, int]]:
    """Run filters in order; return kept pairs and ``{filter name: dropped}``."""
    dropped: dict[str, int] = {}
    current = list(pairs)
    for f in filters:
        kept = f(current)
        dropped[f.name] = dropped.get(f.name, 0) + len(current) - len(kept)
        current = kept
    return current, dropped


# --- retrieval-based filters -------------------------------------------------------
#
# Both indexes score *chunks*, the unit a RAG pipeline retrieves, so a pair is judged
# the way it will be searched. They are built once and can be shared between
# :class:`RoundTripFilter` and :func:`ragtune.pairs.negatives.mine_hard_negatives`.

RETRIEVERS = ("bm25", "model")


def _chunk_positions(chunks: Sequence[Chunk]) -> dict[str, int]:
    if not chunks:
        raise ConfigError("chunks: empty; pass the chunks the pairs were generated from")
    pos: dict[str, int] = {}
    for i, c in enumerate(chunks):
        if c.id in pos:
            raise InputError(
                f"chunks: id {c.id!r} appears twice; chunk ids must be unique (re-run ingestion)"
            )
        pos[c.id] = i
    return pos


def positive_positions(pairs: Sequence[Pair], positions: dict[str, int]) -> np.ndarray:
    """Index of each pair's ``positive_id`` in the corpus; an unknown id is an :class:`InputError`."""
    missing = [p.positive_id for p in pairs if p.positive_id not in positions]
    if missing:
        raise InputError(
            f"pairs: {len(missing)} pair(s) have a positive_id that is not among the "
            f"{len(positions)} chunks (e.g. {missing[0]!r}); build the index from the chunks "
            "the pairs were generated from"
        )
    return np.fromiter((positions[p.positive_id] for p in pairs), dtype=np.int64, count=len(pairs))


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased words without stop words, with the tokenizer the offline generator uses.

    Numbers, amounts and hyphenated codes ("$2.40", "10-K") stay whole, so
    queries built from figures match the chunk that states them.
    """
    return [w for w in (t.lower() for t in words(text)) if w not in STOPWORDS]


class BM25ChunkIndex:
    """BM25 over chunk texts (the ``bm25s`` library, Lucene variant), for lexical round trips.

    Scores every chunk for a query, so callers can rank the positive exactly and
    read any candidate's score (the false-negative guard needs both).
    """

    kind = "bm25"

    def __init__(self, chunks: Sequence[Chunk], k1: float = 1.5, b: float = 0.75) -> None:
        import bm25s

        self.chunks = list(chunks)
        self.positions = _chunk_positions(self.chunks)
        self.ids = [c.id for c in self.chunks]
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index([bm25_tokens(c.text) for c in self.chunks], show_progress=False)

    def __len__(self) -> int:
        return len(self.chunks)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """``(len(queries), len(chunks))`` BM25 scores; a query with no indexed word scores 0."""
        out = np.zeros((len(queries), len(self.chunks)), dtype=np.float32)
        for i, q in enumerate(queries):
            toks = [t for t in bm25_tokens(q) if t in self._bm25.vocab_dict]
            if toks:
                out[i] = self._bm25.get_scores(toks)
        return out


class DenseChunkIndex:
    """Window vectors of every chunk under one encoder; a chunk scores as its best window.

    This is the long-chunk (max-sim) search ragtune evaluates with
    (:func:`ragtune.index.exact.exact_search` over an ``EncodedCorpus`` with
    window owners), so filtering and mining see chunks the way search does.
    """

    kind = "model"

    def __init__(self, chunks: Sequence[Chunk], encoder: Any, spec: WindowSpec | None = None) -> None:
        self.chunks = list(chunks)
        self.positions = _chunk_positions(self.chunks)
        self.ids = [c.id for c in self.chunks]
        self.encoder = as_encoder(encoder)
        wv = self.encoder.encode_windows([c.text for c in self.chunks], spec)
        self.spans = wv.spans
        self.corpus = EncodedCorpus(ids=self.ids, vectors=wv.vectors, owner=wv.owner)
        self._starts = np.flatnonzero(np.r_[True, np.diff(wv.owner) != 0])
        self._ends = np.r_[self._starts[1:], len(wv.owner)]

    def __len__(self) -> int:
        return len(self.chunks)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_queries(list(queries))

    def search(self, qvecs: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        """Top-``k`` chunks per query by best-window cosine (``exact_search``, long mode)."""
        return exact_search(qvecs, self.corpus, top_k=top_k)

    def chunk_score(self, qvec: np.ndarray, chunk: int) -> tuple[float, int]:
        """Best-window cosine of one chunk for one query, and which of its windows won."""
        sims = self.corpus.vectors[self._starts[chunk] : self._ends[chunk]] @ qvec
        best = int(np.argmax(sims))
        return float(sims[best]), best

    def window_text(self, chunk: int, window: int) -> str:
        a, b = self.spans[chunk][window]
        return self.chunks[chunk].text[a:b]


def as_encoder(model: Any) -> Encoder:
    """Accept an :class:`Encoder` or anything it wraps (a ``SentenceTransformer``, a model path)."""
    if model is None:
        raise ConfigError(
            "encoder: none given; pass an Encoder or a SentenceTransformer (or use retriever='bm25')"
        )
    return model if isinstance(model, Encoder) else Encoder(model)


class RoundTripFilter:
    """Keep a pair only if a retriever finds its source chunk in the top ``k`` of the corpus.

    Round-trip consistency (Alberti et al., 2019, for QA; Promptagator, Dai et
    al., 2022, for retrieval): a generated query that does not lead back to the
    passage it was made from is usually vague, about something said in many
    chunks, or answered elsewhere — training on it teaches the wrong target.
    ``retriever="bm25"`` is fast and lexical; ``retriever="model"`` uses a base
    encoder and best-window scoring, like long-chunk search. The corpus is
    indexed once, at construction; pass ``index`` to share one with the miner.

    Use the *base* model for ``"model"``: the model being trained would grade
    its own pairs. Under BM25 a positive that shares no word with its query is
    dropped (it has no rank), and ties favour the positive — only chunks scoring
    strictly higher push it down, so an exact copy of a chunk does not drop its pairs.
    """

    name = "round_trip"

    def __init__(
        self,
        chunks: Sequence[Chunk] | None = None,
        retriever: str = "bm25",
        encoder: Any = None,
        k: int = 10,
        index: BM25ChunkIndex | DenseChunkIndex | None = None,
        batch_size: int = 256,
    ) -> None:
        if k < 1:
            raise ConfigError(f"k={k}: must be >= 1 (the rank the source chunk must reach)")
        if index is not None:
            retriever = index.kind
        elif retriever not in RETRIEVERS:
            raise ConfigError(f"retriever={retriever!r}: choose one of {list(RETRIEVERS)}")
        elif chunks is None:
            raise ConfigError("chunks: none given; pass the corpus chunks (or a prebuilt index=)")
        elif retriever == "bm25":
            index = BM25ChunkIndex(chunks)
        else:
            if encoder is None:
                raise ConfigError(
                    "encoder: retriever='model' needs a base encoder (or use retriever='bm25')"
                )
            index = DenseChunkIndex(chunks, encoder)
        self.retriever = retriever
        self.index = index
        self.k = k
        self.batch_size = batch_size

    def __call__(self, pairs: Sequence[Pair]) -> list[Pair]:
        if not pairs:
            return []
        keep = self.consistent(pairs)
        return [p for p, ok in zip(pairs, keep) if ok]

    def consistent(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Boolean mask: does each pair's positive chunk reach the top ``k``?"""
        pos = positive_positions(pairs, self.index.positions)
        queries = [p.query for p in pairs]
        if isinstance(self.index, BM25ChunkIndex):
            return self._bm25_mask(queries, pos)
        hits = self.index.search(self.index.encode_queries(queries), top_k=self.k)
        return np.array([any(cid == p.positive_id for cid, _ in h) for p, h in zip(pairs, hits)], dtype=bool)

    def _bm25_mask(self, queries: list[str], pos: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(queries), dtype=bool)
        for i in range(0, len(queries), self.batch_size):
            scores = self.index.scores(queries[i : i + self.batch_size])
            own = scores[np.arange(len(scores)), pos[i : i + self.batch_size]]
            better = (scores > own[:, None]).sum(axis=1)
            mask[i : i + len(scores)] = (own > 0) & (better < self.k)
        return mask


class NearDuplicateFilter:
    """Drop a query whose embedding has cosine >= ``threshold`` with an earlier query of its chunk.

    :class:`DuplicateFilter` catches identical wording; rewordings of one
    question about one chunk ("What does a monthly pass cost?" / "How much does a
    monthly pass cost?": cosine 0.99 with all-MiniLM-L6-v2) add little signal and
    over-weight that chunk in training. At the default 0.95, distinct questions
    on the same chunk (about 0.5) and looser paraphrases (about 0.94) stay. Queries
    of *different* chunks are never compared: similar questions with different
    answers are what a retriever must learn to tell apart. The first query seen is kept.
    """

    name = "near_duplicates"

    def __init__(self, encoder: Any, threshold: float = 0.95) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(
                f"threshold={threshold}: must be a cosine in (0, 1]; 0.95 drops only rewordings"
            )
        self.encoder = as_encoder(encoder)
        self.threshold = threshold

    def __call__(self, pairs: Sequence[Pair]) -> list[Pair]:
        if not pairs:
            return []
        vecs = self.encoder.encode_queries([p.query for p in pairs])
        kept_by_chunk: dict[str, list[int]] = {}
        out = []
        for i, p in enumerate(pairs):
            earlier = kept_by_chunk.setdefault(p.positive_id, [])
            if earlier and float(np.max(vecs[earlier] @ vecs[i])) >= self.threshold:
                continue
            earlier.append(i)
            out.append(p)
        return out
