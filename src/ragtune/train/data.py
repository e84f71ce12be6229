"""Training data: the ``datasets.Dataset`` each loss expects, and the sequence length it needs."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragtune.errors import ConfigError
from ragtune.pairs.schema import Pair
from ragtune.train.losses import LABELLED, NEEDS_NEGATIVES

log = logging.getLogger(__name__)


def pick_max_seq_length(model: Any, texts: Sequence[str], quantile: float = 0.98) -> int:
    """Shortest length (multiple of 32) that holds ``quantile`` of the texts, capped by the model."""
    cap = int(model.max_seq_length)
    if not texts:
        return cap
    sample = list(texts)[:4000]
    lengths = [len(ids) for ids in model.tokenizer(sample, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]]
    q = float(np.quantile(lengths, quantile))
    return int(min(cap, max(32, math.ceil(q / 32) * 32)))


def build_dataset(pairs: Sequence[Pair], loss: str) -> Any:
    """The ``datasets.Dataset`` with the columns ``loss`` expects."""
    from datasets import Dataset

    if loss in LABELLED:
        rows: dict[str, list[Any]] = {"sentence1": [], "sentence2": [], "label": []}
        for p in pairs:
            rows["sentence1"].append(p.query)
            rows["sentence2"].append(p.positive)
            rows["label"].append(1.0)
            for n in p.negatives:
                rows["sentence1"].append(p.query)
                rows["sentence2"].append(n["text"])
                rows["label"].append(0.0)
        if not any(lbl == 0.0 for lbl in rows["label"]):
            raise ConfigError(
                f"loss={loss}: needs negatives in the pairs (generate with hard negatives), "
                "or use loss=mnrl, which takes in-batch negatives"
            )
        return Dataset.from_dict(rows)
    with_neg = [p for p in pairs if p.negatives]
    if loss in NEEDS_NEGATIVES:
        if not with_neg:
            raise ConfigError(
                f"loss={loss}: no pair has negatives; generate pairs with hard negatives, or use loss=mnrl"
            )
        return Dataset.from_dict(
            {
                "anchor": [p.query for p in with_neg],
                "positive": [p.positive for p in with_neg],
                "negative": [p.negatives[0]["text"] for p in with_neg],
            }
        )
    cols: dict[str, list[str]] = {"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]}
    if with_neg:
        # MNRL takes any number of negative columns, but every row needs each one:
        # use as many as the pairs with negatives all have, and give a pair the
        # miner found none for (its passage has no close neighbour) other pairs'
        # positives instead, rather than dropping every mined negative.
        width = min(len(p.negatives) for p in with_neg)
        if len(with_neg) < len(pairs):
            log.info("%d of %d pairs have no mined negative; they get other pairs' positives",
                     len(pairs) - len(with_neg), len(pairs))
        for i in range(width):
            cols[f"negative_{i + 1}"] = [
                p.negatives[i]["text"] if p.negatives else _other_positive(pairs, j, i) for j, p in enumerate(pairs)
            ]
    return Dataset.from_dict(cols)


def _other_positive(pairs: Sequence[Pair], j: int, i: int) -> str:
    """A positive of another pair (the next ones in order, skipping pair ``j``'s own passage)."""
    n = len(pairs)
    own = pairs[j].positive
    seen = 0
    for step in range(1, n):
        text = pairs[(j + step) % n].positive
        if text != own:
            if seen == i:
                return text
            seen += 1
    return own if n == 1 else pairs[(j + 1) % n].positive
