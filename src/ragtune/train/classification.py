"""Tune an encoder on labelled texts, the SetFit way: texts of one label pulled together, other labels pushed apart.

The default loss, ``batch-all`` (sentence-transformers' ``BatchAllTripletLoss``
over cosine distance), takes every (anchor, same-label positive, other-label
negative) triplet in a batch, and the ``GROUP_BY_LABEL`` sampler puts several
labels with at least two texts each in every batch. ``cosine`` is SetFit's own
recipe instead: generated pairs (same label 1, other label 0) under
``CosineSimilarityLoss``. Seed and precision follow :mod:`ragtune.train`'s
conventions (:func:`~ragtune.train.hardware.resolve_precision`); the model
folder is written atomically and loads with ``SentenceTransformer(out_dir)``.

This module takes plain texts and labels: reading a labelled set and its
train/test split live in :mod:`ragtune.evaluation.classification` (a sibling
layer), and ``ragtune train --task classification`` joins the two.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragtune._io import atomic_path, write_json
from ragtune.encoders.loading import embedding_width, load_model, model_label
from ragtune.errors import ConfigError
from ragtune.train.card import CARD_FILE
from ragtune.train.hardware import resolve_precision

#: loss name → what it trains on
LOSSES = {
    "batch-all": "BatchAllTripletLoss (cosine distance, margin 0.3): every same-label / other-label triplet in a batch",
    "batch-hard-soft-margin": "BatchHardSoftMarginTripletLoss: the hardest positive and negative of each text in a batch",
    "cosine": "CosineSimilarityLoss on generated pairs (same label 1, other label 0): SetFit's recipe",
}
DEFAULT_LOSS = "batch-all"
DEFAULT_LEARNING_RATE = 5e-5


@dataclass
class ClassificationTrainResult:
    """What a classification tuning run did."""

    model_dir: Path
    seconds: float
    steps: int
    texts: int
    labels: list[str]
    loss: str
    precision: str
    dims: list[int]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_dir"] = str(self.model_dir)
        return d


def train_classification(
    texts: Sequence[str],
    labels: Sequence[str],
    out_dir: str | Path,
    base: str | None = None,
    loss: str = DEFAULT_LOSS,
    epochs: float = 2.0,
    batch_size: int = 32,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    max_steps: int = -1,
    precision: str = "auto",
    seed: int = 13,
    pairs_per_text: int = 4,
) -> ClassificationTrainResult:
    """Fine-tune ``base`` so that texts of one label embed close together; save a sentence-transformers folder.

    Args:
        texts: the training texts (only the train part: keep the test texts out).
        labels: one label per text; at least two labels with two texts each.
        out_dir: the model folder to write (replaced atomically).
        base: the model to start from (folder, hub id, or ``default``).
        loss: a key of :data:`LOSSES`.
        epochs: passes over the texts (``max_steps`` > 0 overrides).
        batch_size: texts per batch (even, at least 4, for the batch losses).
        learning_rate: AdamW learning rate.
        warmup_ratio: share of steps warming the learning rate up.
        weight_decay: AdamW weight decay.
        max_steps: stop after this many steps (-1: by epochs).
        precision: ``auto`` | ``bf16`` | ``fp16`` | ``fp32``.
        seed: torch and data-order seed.
        pairs_per_text: ``cosine`` only: pairs generated per text (half positive, half negative).

    Returns:
        A :class:`ClassificationTrainResult`; ``out_dir/ragtune.json`` records base, settings and result.

    Example:
        >>> r = train_classification(["great", "superb", "awful", "dreadful"], ["pos", "pos", "neg", "neg"],
        ...                          "out/model", max_steps=4)  # doctest: +SKIP
        >>> SentenceTransformer("out/model")  # doctest: +SKIP
    """
    import torch
    from datasets import Dataset
    from sentence_transformers.base.sampler import BatchSamplers

    from ragtune.train.arguments import sentence_trainer, training_arguments

    if loss not in LOSSES:
        raise ConfigError(f"loss={loss!r}: for classification choose {', '.join(LOSSES)}")
    if len(texts) != len(labels):
        raise ConfigError(f"{len(texts)} texts but {len(labels)} labels")
    counts = Counter(labels)
    if sum(1 for n in counts.values() if n >= 2) < 2:
        raise ConfigError(f"classification training needs two labels with at least two texts each, got {dict(counts)}")
    out_dir = Path(out_dir)
    classes = sorted(counts)
    ids = [classes.index(lbl) for lbl in labels]

    torch.manual_seed(seed)
    model = load_model(base)
    precision = resolve_precision(precision)
    st_losses = _st_losses()
    if loss == "cosine":
        dataset = Dataset.from_dict(_pairs(list(texts), ids, pairs_per_text, seed))
        objective = st_losses.CosineSimilarityLoss(model)
        sampler, rows = BatchSamplers.BATCH_SAMPLER, len(dataset)
        batch = max(1, min(batch_size, rows))
    else:
        dataset = Dataset.from_dict({"text": list(texts), "label": ids})
        if loss == "batch-all":
            distance = st_losses.BatchHardTripletLossDistanceFunction.cosine_distance
            objective = st_losses.BatchAllTripletLoss(model, distance_metric=distance, margin=0.3)
        else:
            objective = st_losses.BatchHardSoftMarginTripletLoss(model)
        sampler, rows = BatchSamplers.GROUP_BY_LABEL, len(dataset)
        batch = max(4, min(batch_size, rows) // 2 * 2)  # the label-grouped sampler takes an even size >= 4
    ckpt_dir = out_dir.with_name(out_dir.name + ".checkpoints")
    args = training_arguments(
        ckpt_dir,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch,
        learning_rate=learning_rate,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        batch_sampler=sampler,
        precision=precision,
        logging_steps=10,
        seed=seed,
        drop_last=rows >= 2 * batch,
    )
    trainer = sentence_trainer(model, args, dataset, objective)
    t0 = time.perf_counter()
    steps = int(trainer.train().global_step)
    result = ClassificationTrainResult(
        model_dir=out_dir, seconds=round(time.perf_counter() - t0, 2), steps=steps, texts=len(texts),
        labels=classes, loss=loss, precision=precision, dims=[embedding_width(model)],
    )
    with atomic_path(out_dir) as tmp:
        model.save(str(tmp))
        write_json(tmp / CARD_FILE, {
            "base_model": model_label(base),
            "task": "classification",
            "train": {"loss": loss, "epochs": epochs, "batch_size": batch, "learning_rate": learning_rate,
                      "warmup_ratio": warmup_ratio, "weight_decay": weight_decay, "max_steps": max_steps, "seed": seed},
            "result": result.to_dict(),
            "data": {"texts": len(texts), "per_label": dict(sorted(counts.items()))},
        })
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result


def _st_losses() -> Any:
    from sentence_transformers.sentence_transformer import losses

    return losses


def _pairs(texts: list[str], ids: list[int], per_text: int, seed: int) -> dict[str, list[Any]]:
    """SetFit's pairs: for each text, ``per_text / 2`` same-label partners (score 1) and as many other-label ones (0)."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(ids):
        by_label.setdefault(y, []).append(i)
    others = {y: [j for j, z in enumerate(ids) if z != y] for y in by_label}
    a, b, score = [], [], []
    for i, y in enumerate(ids):
        same, other = [j for j in by_label[y] if j != i], others[y]
        for k in range(per_text):
            pool, s = (same, 1.0) if k % 2 == 0 else (other, 0.0)
            if pool:
                a.append(texts[i])
                b.append(texts[rng.choice(pool)])
                score.append(s)
    return {"sentence1": a, "sentence2": b, "score": score}
