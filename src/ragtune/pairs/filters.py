"""Filters over generated pairs; each returns the kept pairs and how many it dropped.

The counts go into ``run.json`` so a user can see what generation threw away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ragtune.pairs.schema import Pair
from ragtune.pairs.text import content_words, normalize_query, words


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
