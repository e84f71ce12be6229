"""Passage-grouped batches: every query of a passage in one batch, each passage embedded once.

Synthetic pair sets ask several questions of each passage (LlamaIndex's
generator asks 2 per chunk, ragtune's offline one 3 per window). Plain MNRL
batches hold one (query, passage) row per pair, so a passage with three
questions is embedded three times per epoch, and the no-duplicates sampler
must keep those rows apart. Passages are the long side (256 tokens against a
query's 20), so they are nearly all of the compute.

Here a batch is ``batch_size`` *distinct passages* with all their queries,
and :class:`PassageGroupedMNRLoss` embeds each distinct text once: the same
number of in-batch negatives per query as plain MNRL at the same batch size,
and about ``queries per passage`` times fewer passage encodings per epoch.
A query's other-query-same-passage rows can no longer be false negatives,
because they are the same candidate.

Data-parallel (``torchrun`` / ``accelerate launch``): accelerate hands batch
``i`` to rank ``i mod world``. The sampler yields a whole multiple of the world
size per epoch (dropping at most ``world - 1`` batches, different ones each
epoch) and declares its batches variable-length, so accelerate neither drops
them nor pads the last round with batches from the start: every rank sees
disjoint passages.
"""

from __future__ import annotations

import os
import random
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

try:  # sentence-transformers >= 5 keeps samplers under base/
    from sentence_transformers.base.sampler import DefaultBatchSampler
except ImportError:  # pragma: no cover - older sentence-transformers
    from sentence_transformers.sampler import DefaultBatchSampler  # type: ignore[no-redef]


class PassageGroupedBatchSampler(DefaultBatchSampler):
    """Batches of ``batch_size`` distinct passages, each with all (up to ``max_queries_per_passage``) of its queries.

    Reads the dataset's ``positive`` column. Groups are shuffled each epoch
    (seeded by ``seed`` and the epoch), so runs are reproducible.
    """

    max_queries_per_passage = 8

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        world_size: int | None = None,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        if "positive" not in dataset.column_names:
            raise ValueError("passage-grouped batches need a 'positive' column in the training dataset")
        groups: OrderedDict[str, list[int]] = OrderedDict()
        for i, text in enumerate(dataset["positive"]):
            groups.setdefault(text, []).append(i)
        cap = self.max_queries_per_passage
        self.groups = [g[i : i + cap] for g in groups.values() for i in range(0, len(g), cap)]
        self.passages = batch_size
        self.world_size = world_size or int(os.environ.get("WORLD_SIZE", "1") or 1)
        if self.world_size > 1:
            # variable-length batches: accelerate's BatchSamplerShard then keeps every one of them
            self.batch_size = None  # type: ignore[assignment]

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.groups)))
        rng.shuffle(order)
        batches: list[list[int]] = []
        current: list[int] = []
        passages = 0
        for gi in order:
            current.extend(self.groups[gi])
            passages += 1
            if passages == self.passages:
                batches.append(current)
                current, passages = [], 0
        if current and not (self.drop_last and passages < self.passages):
            batches.append(current)
        return batches[: len(batches) - len(batches) % self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        full, rest = divmod(len(self.groups), self.passages)
        n = full + (1 if rest and not self.drop_last else 0)
        return n - n % self.world_size


def _row_key(ids: Tensor, length: int) -> tuple[int, ...]:
    return tuple(ids[:length].tolist())


def unique_rows(columns: list[dict[str, Tensor]], pad_id: int = 0) -> tuple[dict[str, Tensor], list[list[int]]]:
    """Merge tokenized candidate columns into one batch of their distinct rows.

    Returns the merged features (only rows whose token ids differ, padded to
    the longest of them) and, per column, each row's index into that batch.
    """
    keys: dict[tuple[int, ...], int] = {}
    picks: list[tuple[int, int, int]] = []  # (column, row, length)
    inverse: list[list[int]] = []
    for c, feats in enumerate(columns):
        lengths = feats["attention_mask"].sum(dim=1).tolist()
        col_inv = []
        for r, n in enumerate(lengths):
            k = _row_key(feats["input_ids"][r], int(n))
            if k not in keys:
                keys[k] = len(picks)
                picks.append((c, r, int(n)))
            col_inv.append(keys[k])
        inverse.append(col_inv)
    width = max(n for _, _, n in picks)
    merged: dict[str, Tensor] = {}
    for name, first in columns[0].items():
        if not isinstance(first, Tensor) or first.ndim != 2:
            merged[name] = first
            continue
        fill = pad_id if name == "input_ids" else 0
        out = torch.full((len(picks), width), fill, dtype=first.dtype, device=first.device)
        for i, (c, r, _) in enumerate(picks):
            src = columns[c][name][r, :width]
            out[i, : src.shape[0]] = src
        merged[name] = out
    return merged, inverse


def embed_by_length(model: nn.Module, features: dict[str, Tensor], rows: int = 16) -> Tensor:
    """Sentence embeddings of ``features``, run in slices of similar length, each trimmed to its own width.

    A padded batch costs its longest row times its size; questions range from 10
    to 100+ tokens, so slicing by length skips most of the padding (on a CPU,
    padding is real compute). Same embeddings as one call, in the input order.
    """
    mask = features["attention_mask"]
    n = mask.shape[0]
    if n <= rows:
        return model(features)["sentence_embedding"]
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths)
    parts = []
    for start in range(0, n, rows):
        idx = order[start : start + rows]
        width = int(lengths[idx].max())
        sub = {
            k: (v[idx, :width] if isinstance(v, Tensor) and v.ndim == 2 and v.shape[0] == n else v)
            for k, v in features.items()
        }
        parts.append(model(sub)["sentence_embedding"])
    out = torch.cat(parts, dim=0)
    return out[torch.argsort(order)]


def gather_candidates(c: Tensor) -> tuple[Tensor, Tensor | None, int]:
    """All ranks' candidate embeddings (this rank's keep their gradient), a mask of the real rows, and
    where this rank's rows start; ``(c, None, 0)`` outside data-parallel training.

    Ranks hold different numbers of distinct candidates, so each pads to the largest before gathering.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return c, None, 0
    from sentence_transformers.util.distributed import all_gather_with_grad

    world, rank = dist.get_world_size(), dist.get_rank()
    n = torch.tensor([c.shape[0]], device=c.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    width = int(max(int(s) for s in sizes))
    padded = nn.functional.pad(c, (0, 0, 0, width - c.shape[0]))
    everyone = all_gather_with_grad(padded)
    valid = torch.cat([torch.arange(width, device=c.device) < int(s) for s in sizes])
    return everyone, valid, rank * width


class PassageGroupedMNRLoss(nn.Module):
    """InfoNCE over distinct candidates: queries against every distinct passage (and mined negative) in the batch.

    Same objective as ``MultipleNegativesRankingLoss`` (cosine × ``scale``,
    cross-entropy on the query's own passage) with duplicates merged: a
    passage shared by several queries is one candidate, embedded once.
    ``symmetric`` adds the passage → query direction (each passage against all
    queries of the batch, any of its own queries counting as right), as
    ``MultipleNegativesSymmetricRankingLoss`` does for one query per passage.
    Under data-parallel training the candidates of every rank are gathered
    (with gradients for this rank's), so each query sees ``world`` times the
    in-batch negatives, as sentence-transformers' ``gather_across_devices``.
    Wraps in ``MatryoshkaLoss`` like any sentence-transformers loss.
    """

    def __init__(self, model: nn.Module, scale: float = 20.0, symmetric: bool = False, slice_rows: int = 16) -> None:
        super().__init__()
        self.model = model
        self.scale = scale
        self.symmetric = symmetric
        self.slice_rows = slice_rows
        tok = getattr(model, "tokenizer", None)
        self.pad_id = int(getattr(tok, "pad_token_id", 0) or 0)

    def forward(self, sentence_features: list[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        queries = embed_by_length(self.model, features[0], self.slice_rows)
        merged, inverse = unique_rows(features[1:], self.pad_id)
        candidates = embed_by_length(self.model, merged, self.slice_rows)
        q = nn.functional.normalize(queries, dim=-1)
        c = nn.functional.normalize(candidates, dim=-1)
        target = torch.tensor(inverse[0], device=q.device)
        scores = q @ c.T * self.scale
        everyone, valid, offset = gather_candidates(c)
        if valid is None:
            loss = nn.functional.cross_entropy(scores, target)
        else:  # data-parallel: every rank's candidates are negatives too
            wide = (q @ everyone.T * self.scale).masked_fill(~valid, float("-inf"))
            loss = nn.functional.cross_entropy(wide, target + offset)
        if self.symmetric:
            # passages that are some query's positive, against all queries; a passage's own queries all count
            owners = torch.unique(target)
            own = target.unsqueeze(0) == owners.unsqueeze(1)  # (passages, queries)
            logits = scores.T[owners]
            back = -(torch.logsumexp(logits.masked_fill(~own, float("-inf")), dim=1) - torch.logsumexp(logits, dim=1))
            loss = (loss + back.mean()) / 2
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "similarity_fct": "cos_sim",
            "batches": "passage-grouped",
            "symmetric": self.symmetric,
        }
