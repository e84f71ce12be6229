"""Train/validation split by source document (or chunk), never by pair.

Splitting by pair would put queries about the same chunk on both sides and
inflate validation figures; here a document's pairs all land on one side.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from ragtune.errors import ConfigError
from ragtune.pairs.schema import Pair


def split_pairs(
    pairs: Sequence[Pair], val_fraction: float = 0.15, by: str = "doc", seed: int = 13, min_groups: int = 5
) -> list[Pair]:
    """Return the pairs with ``split`` set to ``train`` or ``val``.

    ``by="doc"`` groups by ``doc_id`` (a file, or a PDF page); when there are
    fewer than ``min_groups`` documents it falls back to grouping by chunk.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction}: must be in [0, 1)")
    if by not in ("doc", "chunk"):
        raise ConfigError(f"split by={by!r}: choose 'doc' or 'chunk'")
    if val_fraction == 0.0:
        return [replace(p, split="train") for p in pairs]

    def key(p: Pair) -> str:
        return (p.doc_id or p.positive_id) if by == "doc" else p.positive_id

    groups = sorted({key(p) for p in pairs})
    if by == "doc" and len(groups) < min_groups:
        return split_pairs(pairs, val_fraction, by="chunk", seed=seed, min_groups=min_groups)
    rng = random.Random(seed)
    rng.shuffle(groups)
    n_val = max(1, round(len(groups) * val_fraction)) if len(groups) > 1 else 0
    val = set(groups[:n_val])
    return [replace(p, split="val" if key(p) in val else "train") for p in pairs]
