"""Stage 2 — chunks to query → passage pairs (offline by default, an LLM when set)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ragtune.corpus.reader import Chunk
from ragtune.encoders.windows import WindowSpec
from ragtune.errors import ConfigError
from ragtune.pairs.filters import DuplicateFilter, LengthFilter, apply_filters
from ragtune.pairs.offline import OfflineConfig, OfflineGenerator
from ragtune.pairs.schema import (
    Pair,
    load_pairs,
    pairs_from_llamaindex,
    pairs_to_llamaindex,
    save_pairs,
)
from ragtune.pairs.split import split_pairs

log = logging.getLogger(__name__)

__all__ = [
    "GenerationConfig",
    "GenerationResult",
    "OfflineConfig",
    "OfflineGenerator",
    "Pair",
    "generate_pairs",
    "load_pairs",
    "make_generator",
    "pairs_from_llamaindex",
    "pairs_to_llamaindex",
    "save_pairs",
    "split_pairs",
]


@dataclass
class GenerationConfig:
    """Everything the pair stage needs besides the chunks."""

    offline: OfflineConfig = field(default_factory=OfflineConfig)
    llm: str | None = None  # "provider:model" spec: use an LLM instead of the offline generator
    questions_per_chunk: int = 2  # LLM generator: questions asked per window
    # what a pair's positive is: "window" (the window holding the answer: trains
    # best-window search), "chunk" (the whole chunk, as a one-vector-per-chunk
    # index reads it), or "both" (one pair of each)
    positive: Literal["window", "chunk", "both"] = "window"
    # round-trip consistency: keep a pair only if this retriever ranks its chunk
    # in the top ``round_trip_k`` ("bm25" or "model"; None: off)
    round_trip: Literal["bm25", "model"] | None = None
    round_trip_k: int = 3
    # hard negatives mined per pair (0: in-batch negatives only)
    negatives: int = 0
    # who mines them: "model" (the base model's best windows), "bm25" (lexically close but
    # wrong chunks: what hybrid search's BM25 side would confuse), or "both"
    negatives_from: Literal["model", "bm25", "both"] = "model"
    max_pairs: int | None = None
    val_fraction: float = 0.15
    split_by: Literal["doc", "chunk"] = "doc"
    seed: int = 13

    def __post_init__(self) -> None:
        if self.max_pairs is not None and self.max_pairs < 2:
            raise ConfigError(f"max_pairs={self.max_pairs}: must be at least 2 (training needs two pairs)")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction}: must be in [0, 1)")
        if self.negatives_from not in ("model", "bm25", "both"):
            raise ConfigError(f"negatives_from={self.negatives_from!r}: choose 'model', 'bm25' or 'both'")
        if self.negatives < 0 or self.round_trip_k < 1:
            raise ConfigError(f"negatives={self.negatives}, round_trip_k={self.round_trip_k}: must be >= 0 and >= 1")


@dataclass
class GenerationResult:
    pairs: list[Pair]
    generated: int
    dropped: dict[str, int]
    by_kind: dict[str, int]
    windows: int
    generator_stats: dict[str, Any] = field(default_factory=dict)
    mining: dict[str, Any] = field(default_factory=dict)


def generate_pairs(
    chunks: Sequence[Chunk],
    tokenizer: Any,
    spec: WindowSpec,
    config: GenerationConfig | None = None,
    generator: Callable[..., list[Pair]] | None = None,
    encoder: Any = None,
) -> GenerationResult:
    """Generate, filter, cap and split pairs for ``chunks``.

    ``encoder`` (the base model's :class:`~ragtune.encoders.encoder.Encoder`) is needed
    for model round-trip filtering and hard-negative mining.
    """
    config = config or GenerationConfig()
    gen = generator or make_generator(config)
    if config.positive not in ("window", "chunk", "both"):
        from ragtune.errors import ConfigError

        raise ConfigError(f"positive={config.positive!r}: choose 'window', 'chunk' or 'both'")
    raw = gen(chunks, tokenizer, spec)
    filters: list[Any] = [LengthFilter(), DuplicateFilter()]
    if config.round_trip:
        from ragtune.pairs.filters import RoundTripFilter

        filters.append(
            RoundTripFilter(chunks, retriever=config.round_trip, encoder=encoder, k=config.round_trip_k)
        )
    kept, dropped = apply_filters(raw, filters)
    mining: dict[str, Any] = {}
    if config.negatives:
        from ragtune.pairs.negatives import mine_hard_negatives

        mined = mine_hard_negatives(
            kept, chunks, encoder=encoder if config.negatives_from != "bm25" else None,
            num_negatives=config.negatives, bm25=config.negatives_from != "model",
        )
        kept, mining = mined.pairs, mined.record()
    if config.positive != "window":
        kept = _with_chunk_positives(kept, {c.id: c.text for c in chunks}, keep_window=config.positive == "both")
    if config.max_pairs is not None and len(kept) > config.max_pairs:
        before = len(kept)
        kept = _cap_round_robin(kept, config.max_pairs, config.seed)
        dropped["max_pairs"] = before - len(kept)
    split = split_pairs(kept, config.val_fraction, by=config.split_by, seed=config.seed)
    by_kind: dict[str, int] = {}
    for p in split:
        by_kind[p.source] = by_kind.get(p.source, 0) + 1
    stats = getattr(gen, "stats", None)
    return GenerationResult(
        pairs=split,
        generated=len(raw),
        dropped=dropped,
        by_kind=by_kind,
        windows=getattr(stats, "windows", 0),
        generator_stats=stats.as_dict() if hasattr(stats, "as_dict") else {},
        mining=mining,
    )


def make_generator(config: GenerationConfig, cache_dir: Any = None) -> Callable[..., list[Pair]]:
    """The generator ``config`` asks for: the offline one, or an LLM from its spec."""
    if not config.llm:
        return OfflineGenerator(config.offline)
    from ragtune.pairs.llm import LLMConfig, LLMGenerator
    from ragtune.providers import llm_from_spec

    return LLMGenerator(
        llm_from_spec(config.llm),
        LLMConfig(questions_per_chunk=config.questions_per_chunk, cache_dir=cache_dir),
    )


def _with_chunk_positives(pairs: list[Pair], texts: dict[str, str], keep_window: bool) -> list[Pair]:
    """Point pairs at their whole chunk (optionally keeping the window pair beside it)."""
    from dataclasses import replace

    out: list[Pair] = []
    for p in pairs:
        whole = texts.get(p.positive_id, p.positive)
        if keep_window and whole != p.positive:
            out.append(p)
        out.append(replace(p, positive=whole, window=None))
    return out


def _cap_round_robin(pairs: list[Pair], n: int, seed: int) -> list[Pair]:
    """Keep ``n`` pairs spread over as many chunks as possible (one per chunk per round)."""
    rng = random.Random(seed)
    by_chunk: dict[str, list[Pair]] = {}
    for p in pairs:
        by_chunk.setdefault(p.positive_id, []).append(p)
    queues = list(by_chunk.values())
    for q in queues:
        rng.shuffle(q)
    rng.shuffle(queues)
    out: list[Pair] = []
    while len(out) < n:
        progressed = False
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop())
                progressed = True
        if not progressed:
            break
    return out
