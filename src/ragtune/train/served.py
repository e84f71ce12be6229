"""Continue a tuned model on pairs from served queries: the second training step of ``ragtune run --queries``.

The model trained on synthetic pairs is what was served; the questions it
received, pseudo-labelled (:mod:`ragtune.pairs.served`), are the distribution it
should be tuned for. They are few (hundreds) beside thousands of synthetic
pairs, so mixing them into one training run drowns them; here the tuned model
is trained further on the served pairs alone, briefly and from where it stands
(no second rotation, no summary stage, no mix back toward it).

Measured on protocol F (``eval/flywheel.py``, eval/README.md), nDCG@10 of the
logs-tuned minus the synthetic-only model on held-out questions: training the
base model on synthetic + served pairs together (382 served among 2,563, labels
from top-3 agreement) gave +0.004 plain and +0.002 in hybrid search
(``flywheel_joint.json``); continuing the synthetic model on the served pairs
alone (top-1 agreement, 2 epochs, 78 s) gave +0.008 / +0.007 on a split not
used to choose it (``flywheel.json``) and +0.021 / +0.006 on the split that
chose it (``flywheel_seed0.json``). Four epochs or mined hard negatives did not
add (``flywheel_probes.json``).

Example::

    from ragtune.train import TrainConfig
    from ragtune.train.served import train_on_served

    result = train_on_served("runs/demo/model", served_pairs, "runs/demo/model-served", TrainConfig())
    result.steps
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.pairs.schema import Pair
from ragtune.train.config import TrainConfig
from ragtune.train.trainer import TrainResult, train

__all__ = ["SERVED_EPOCHS", "check_continuable", "served_config", "train_on_served"]

#: epochs over the served pairs (protocol F probes: 4 epochs on the pseudo-labels gained
#: +0.004 nDCG@10 plain where 2 gained +0.008)
SERVED_EPOCHS = 2.0


def check_continuable(config: TrainConfig) -> None:
    """Raise unless ``config`` makes a model that training on served queries can continue.

    ``ragtune run`` calls it when it reads ``--queries``, before any stage runs.

    Raises:
        ConfigError: ``config`` trains a LoRA adapter or a query adapter (their
            folders are not a model to continue), naming the option to drop.
    """
    if config.lora is not None or config.query_adapter is not None:
        which = "--lora/--peft-method" if config.lora is not None else "--query-adapter"
        raise ConfigError(
            f"--queries continues full fine-tuning of the tuned model, which {which} does not produce: "
            f"drop {which}, or run without --queries"
        )


def served_config(config: TrainConfig, model_dir: str | Path) -> TrainConfig:
    """The run's training settings turned into the continuation's: start from ``model_dir``.

    Loss, batch size, learning rate, precision, sequence length, Matryoshka dims
    and step cap stay the run's; the model is not rotated again, not summarised
    again and not mixed back toward ``model_dir`` (its own step is small).

    Raises:
        ConfigError: see :func:`check_continuable`.
    """
    check_continuable(config)
    return replace(config, base=str(model_dir), epochs=SERVED_EPOCHS, rotate="none", summarize=False,
                   interpolate="off", early_stopping_patience=0)


def train_on_served(
    model_dir: str | Path,
    pairs: Sequence[Pair],
    out_dir: str | Path,
    config: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Train the model in ``model_dir`` further on served-query ``pairs``; the new model goes to ``out_dir``.

    Args:
        model_dir: the model trained on synthetic pairs (the one that was served).
        pairs: pseudo-labelled pairs from :func:`ragtune.pairs.served.label_served_queries`.
        out_dir: where the continued model is saved (atomically, as :func:`~ragtune.train.train` does).
        config: the run's training settings (:func:`served_config` adapts them).
        checkpoint_dir: where a cut-off continuation resumes from.
        callbacks: ``transformers.TrainerCallback`` objects (progress).
    """
    if len(pairs) < 2:
        raise ConfigError(f"training on served queries needs at least 2 labelled questions, got {len(pairs)}: "
                          "log more searches, or run without --queries")
    return train(pairs, out_dir, served_config(config, model_dir), checkpoint_dir=checkpoint_dir, callbacks=callbacks)
