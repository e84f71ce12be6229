"""Training pairs from served queries: pseudo-labelled by the strongest judge ragtune has.

The questions a deployed retriever receives are the distribution it should be
tuned for, but they come without labels. :func:`label_served_queries` turns a
query log (:mod:`ragtune.pairs.querylog`) into pairs without a human:

- **feedback first**: a chunk a user chose is the positive; chunks they rejected
  are its hard negatives. A rating of 0.5 or more without a choice makes the
  search's top result the positive; a lower one makes it a negative.
- **otherwise agreement**: the query is ranked over the corpus by the dense
  model (each chunk's best window) and by BM25, and the two are fused as
  ragtune's hybrid search fuses them. The fused top chunk is the positive only
  when it is also in the top ``agree_k`` of *both* rankings — two retrievers
  that fail in different ways agreeing is the confidence signal; everything
  else is left out and counted as uncertain.
- **a cap**: one pair per distinct question (normalised), so a few frequent
  queries do not dominate training.

The positive's text is the chunk's best window for the query, as the offline
generator's positives are; negatives then come from the usual miner (with its
false-negative guard) when the run mines them.

Example::

    from ragtune.pairs.querylog import read_query_log
    from ragtune.pairs.served import label_served_queries

    result = label_served_queries(read_query_log("logs/"), chunks, encoder)
    result.pairs[0].source    # 'served'
    result.record()           # counts for run.json
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ragtune.corpus.reader import Chunk
from ragtune.encoders.windows import WindowSpec
from ragtune.errors import ConfigError
from ragtune.index.fusion import fuse
from ragtune.pairs.filters import BM25ChunkIndex, DenseChunkIndex
from ragtune.pairs.querylog import QueryLogData
from ragtune.pairs.schema import Pair
from ragtune.pairs.text import normalize_query

__all__ = ["ServedConfig", "ServedResult", "label_served_queries"]


@dataclass
class ServedConfig:
    """How served queries are labelled.

    Args:
        agree_k: the fused top chunk must be within the top ``agree_k`` of both the
            dense and the BM25 ranking to count as the positive. Protocol F
            (eval/README.md), 439 served Uber questions checked against their
            hidden labels: top 1 of both labels 261 at 86.6 % right, top 3 387 at
            75.2 %; training further on the top-1 labels gained +0.021 nDCG@10
            (plain) on held-out questions, on the top-3 labels +0.004.
        alpha: dense share of the judge's fusion (ragtune's hybrid search form).
        candidates: how deep each ranking is read before fusing.
        min_words: shorter queries are left out (greetings, single keywords).
    """

    agree_k: int = 1
    alpha: float = 0.5
    candidates: int = 50
    min_words: int = 2

    def __post_init__(self) -> None:
        if self.agree_k < 1 or self.candidates < self.agree_k:
            raise ConfigError(f"agree_k={self.agree_k}, candidates={self.candidates}: need 1 <= agree_k <= candidates")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha={self.alpha}: must be in [0, 1]")
        if self.min_words < 1:
            raise ConfigError(f"min_words={self.min_words}: must be at least 1")


@dataclass
class ServedResult:
    """Pairs made from a query log, and how each was labelled (for ``run.json`` and the report)."""

    pairs: list[Pair]
    logged: int = 0
    distinct: int = 0
    labelled: Counter[str] = field(default_factory=Counter)
    uncertain: int = 0
    too_short: int = 0
    unknown_ids: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "logged_searches": self.logged,
            "distinct_queries": self.distinct,
            "pairs": len(self.pairs),
            "labelled_by": dict(sorted(self.labelled.items())),
            "uncertain": self.uncertain,
            "too_short": self.too_short,
            "unknown_chunk_ids": self.unknown_ids,
            **self.config,
        }


def label_served_queries(
    log: QueryLogData,
    chunks: Sequence[Chunk],
    encoder: Any,
    spec: WindowSpec | None = None,
    config: ServedConfig | None = None,
) -> ServedResult:
    """Pairs for the logged queries: feedback where given, else dense–BM25 agreement (see the module).

    Args:
        log: a read query log (:func:`ragtune.pairs.querylog.read_query_log`).
        chunks: the corpus the queries were asked against.
        encoder: the judge's dense model (an :class:`~ragtune.encoders.encoder.Encoder`
            or a SentenceTransformer); in ``ragtune run``, the model trained on
            the synthetic pairs (the one that was served), fused at its fitted weight.
        spec: window length and stride (the run's).
        config: thresholds and the cap.

    Returns:
        :class:`ServedResult` with ``source="served"`` pairs in the train split.
    """
    cfg = config or ServedConfig()
    result = ServedResult(pairs=[], logged=len(log.searches), config={"agree_k": cfg.agree_k, "alpha": cfg.alpha})
    by_query: dict[str, list[dict[str, Any]]] = {}
    for rec in log.searches.values():
        key = normalize_query(rec["query"])
        if len(key.split()) < cfg.min_words:
            result.too_short += 1
            continue
        by_query.setdefault(key, []).append(rec)
    result.distinct = len(by_query)
    if not by_query or not chunks:
        return result

    position = {c.id: i for i, c in enumerate(chunks)}
    votes = _feedback(log, result, position)
    dense = DenseChunkIndex(chunks, encoder, spec)
    bm25 = BM25ChunkIndex(chunks)
    keys = list(by_query)
    queries = [by_query[k][-1]["query"] for k in keys]  # the latest wording of each question
    qvecs = dense.encode_queries(queries)
    dense_hits = dense.search(qvecs, top_k=cfg.candidates)
    for start in range(0, len(keys), 256):  # BM25 scores every chunk: rows are made per batch
        rows = bm25.scores(queries[start : start + 256])
        for off, row in enumerate(rows):
            j = start + off
            searches = by_query[keys[j]]
            chosen, rejected, how = _decision(searches, votes)
            rejected = [cid for cid in rejected if cid in position]
            if chosen is not None and chosen not in position:  # rated a chunk since removed
                result.unknown_ids += 1
                chosen = None
            if chosen is None:
                top_bm25 = [(bm25.ids[i], float(row[i])) for i in row.argsort()[::-1][: cfg.candidates] if row[i] > 0]
                fused = fuse(dense_hits[j], top_bm25, cfg.alpha, 1)
                if not fused:
                    result.uncertain += 1
                    continue
                top = fused[0][0]
                in_dense = top in {cid for cid, _ in dense_hits[j][: cfg.agree_k]}
                in_bm25 = top in {cid for cid, _ in top_bm25[: cfg.agree_k]}
                if not (in_dense and in_bm25) or top in rejected:  # never a chunk the user rejected
                    result.uncertain += 1
                    continue
                chosen, how = top, "agreement"
            pos = position[chosen]
            _, window = dense.chunk_score(qvecs[j], pos)
            chunk = chunks[pos]
            negatives = [{"id": cid, "text": chunks[position[cid]].text} for cid in rejected if cid != chosen]
            # one pair per distinct question: the cap that keeps frequent queries from dominating
            result.pairs.append(Pair(
                query=queries[j], positive=dense.window_text(pos, window), positive_id=chunk.id,
                source="served", doc_id=chunk.doc_id, window=tuple(dense.spans[pos][window]),
                negatives=negatives, split="train",
            ))
            result.labelled[how] += 1
    return result


@dataclass
class _Votes:
    chosen: Counter[str] = field(default_factory=Counter)
    rejected: set[str] = field(default_factory=set)
    rating_up: bool = False
    rating_down: bool = False


def _feedback(log: QueryLogData, result: ServedResult, position: dict[str, int]) -> dict[str, _Votes]:
    """Feedback by search id; ids of chunks no longer in the corpus are counted and dropped."""
    votes: dict[str, _Votes] = {}
    for fb in log.feedback:
        v = votes.setdefault(str(fb["query_id"]), _Votes())
        for cid in fb.get("chosen") or []:
            if cid in position:
                v.chosen[cid] += 1
            else:
                result.unknown_ids += 1
        for cid in fb.get("rejected") or []:
            if cid in position:
                v.rejected.add(cid)
            else:
                result.unknown_ids += 1
        rating = fb.get("rating")
        if isinstance(rating, (int, float)):
            v.rating_up |= rating >= 0.5
            v.rating_down |= rating < 0.5
    return votes


def _decision(searches: Sequence[dict[str, Any]], votes: dict[str, _Votes]) -> tuple[str | None, list[str], str]:
    """(positive chunk id or None, rejected ids, how) from the feedback on a question's searches."""
    chosen: Counter[str] = Counter()
    rejected: set[str] = set()
    rated: str | None = None
    for s in searches:
        v = votes.get(str(s["id"]))
        if v is None:
            continue
        chosen.update(v.chosen)
        rejected |= v.rejected
        top = next((str(r["id"]) for r in s.get("results") or []), None)
        if top is not None and not v.chosen:
            if v.rating_up:
                rated = top
            elif v.rating_down:
                rejected.add(top)
    if chosen:
        return chosen.most_common(1)[0][0], sorted(rejected), "feedback"
    if rated is not None and rated not in rejected:
        return rated, sorted(rejected), "rating"
    return None, sorted(rejected), "agreement"
