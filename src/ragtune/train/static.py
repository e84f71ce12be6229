"""A static student of a tuned model: token vectors distilled by model2vec, then tuned on the run's pairs.

A static embedding model looks each token up in a table and averages: no
attention, so it encodes a hundred times faster than a transformer on a CPU and
reads a whole chunk, not its first 256 tokens. model2vec distils the table from
the *tuned* model (each vocabulary token through the transformer, PCA, Zipf
weighting); sentence-transformers' ``StaticEmbedding`` then trains it on the
run's own pairs with in-batch negatives wrapped in a Matryoshka loss, which
takes seconds. The result is a plain sentence-transformers folder.

Measured on the Uber set (eval/README.md): distilled from the A model, plain
nDCG@10 0.529; tuned on 2,474 offline pairs (lr 0.02, 2 epochs, positives both
window and chunk) 0.670, against 0.596 for the base transformer. The table must
be trained in float32: model2vec stores float16, in which Adam's updates
underflow and the model collapses (measured: nDCG@10 0.011).

Example:
    >>> path = distill_static("runs/demo/model", pairs, "runs/demo/model-static")  # doctest: +SKIP
    >>> SentenceTransformer(str(path)).encode(["battery warranty"]).shape  # doctest: +SKIP
    (1, 256)
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune._io import atomic_path, write_json
from ragtune.errors import ConfigError, InputError
from ragtune.pairs.schema import Pair
from ragtune.progress import task
from ragtune.providers import optional_import

log = logging.getLogger(__name__)

STATIC_CARD = "ragtune_static.json"


@dataclass
class StaticSettings:
    """How the student is distilled and tuned; defaults measured on the Uber set (module docstring)."""

    pca_dims: int = 256
    epochs: float = 2.0
    learning_rate: float = 0.02
    batch_size: int = 256
    matryoshka_dims: tuple[int, ...] = (256, 128, 64, 32)
    seed: int = 13

    def __post_init__(self) -> None:
        if self.pca_dims < 8:
            raise ConfigError(f"static pca_dims={self.pca_dims}: must be at least 8")
        if any(d > self.pca_dims for d in self.matryoshka_dims):
            raise ConfigError(f"static matryoshka_dims={list(self.matryoshka_dims)}: none may exceed pca_dims={self.pca_dims}")


def distill_static(
    model_dir: str | Path,
    pairs: Sequence[Pair],
    out: str | Path,
    settings: StaticSettings | None = None,
) -> Path:
    """Distil a static student from ``model_dir`` and tune it on ``pairs``; writes a sentence-transformers folder.

    Args:
        model_dir: the tuned transformer (a sentence-transformers folder).
        pairs: the run's training pairs (their ``val`` split is left out).
        out: the student's folder (written atomically).
        settings: distillation and training knobs.
    """
    settings = settings or StaticSettings()
    distill = optional_import("model2vec.distill", where="the static student")
    from ragtune.encoders.export import transformer_of
    from ragtune.encoders.loading import load_model

    train_pairs = [p for p in pairs if p.split != "val"]
    if len(train_pairs) < 2:
        raise InputError(f"the static student trains on the run's pairs: got {len(train_pairs)}, need at least 2")
    teacher = load_model(model_dir)
    t0 = time.perf_counter()
    with task("Distilling token vectors (model2vec)"):
        static = distill.distill_from_model(model=transformer_of(teacher), tokenizer=teacher.tokenizer, pca_dims=settings.pca_dims)
    distill_s = time.perf_counter() - t0
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        static.save_pretrained(str(tmp / "model2vec"))
        student = _student(tmp / "model2vec")
        shutil.rmtree(tmp / "model2vec")
        steps = _tune(student, train_pairs, settings, tmp / "checkpoints")
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        student.save(str(tmp))
        write_json(
            tmp / STATIC_CARD,
            {
                "teacher": str(model_dir),
                "settings": settings.__dict__ | {"matryoshka_dims": list(settings.matryoshka_dims)},
                "train_pairs": len(train_pairs),
                "steps": steps,
                "distill_s": round(distill_s, 2),
                "seconds": round(time.perf_counter() - t0, 2),
            },
        )
    return Path(out)


def _student(model2vec_dir: Path) -> Any:
    """A ``SentenceTransformer`` over the distilled table, in float32 (see the module docstring)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    module = StaticEmbedding.from_model2vec(str(model2vec_dir))
    module.embedding.float()
    return SentenceTransformer(modules=[module], device="cpu")


def _tune(student: Any, pairs: Sequence[Pair], settings: StaticSettings, ckpt: Path) -> int:
    """MNRL (in-batch negatives) in a Matryoshka loss on the pairs; returns the steps taken."""
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.training_args import BatchSamplers

    from ragtune.train.arguments import sentence_trainer, training_arguments

    data = Dataset.from_dict({"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]})
    loss = losses.MatryoshkaLoss(student, losses.MultipleNegativesRankingLoss(student), list(settings.matryoshka_dims))
    args = training_arguments(
        ckpt,
        epochs=settings.epochs,
        batch_size=min(settings.batch_size, len(pairs)),
        learning_rate=settings.learning_rate,
        warmup_ratio=0.1,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        use_cpu=True,
        seed=settings.seed,
    )
    trainer = sentence_trainer(student, args, data, loss, progress="Tuning the static student")
    return int(trainer.train().global_step)
