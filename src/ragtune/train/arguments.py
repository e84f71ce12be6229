"""The one place ragtune's trainers build ``SentenceTransformerTrainingArguments`` and the trainer.

The retrieval trainer (:mod:`~ragtune.train.trainer`), the classification
trainer (:mod:`~ragtune.train.classification`) and the static student
(:mod:`~ragtune.train.static`) all train through ``SentenceTransformerTrainer``;
what they share is said here once: warmup as a share of the steps (spelt
``warmup_steps`` below 1, transformers 5's form: its ``warmup_ratio`` is
deprecated), a linear schedule, the same seed for weights and data order, no
tqdm or reporting (steps go to ragtune's progress display through
:class:`~ragtune.train.callbacks.ProgressCallback`), and bf16/fp16 from a
resolved precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def training_arguments(
    output_dir: str | Path,
    *,
    epochs: float,
    batch_size: int,
    learning_rate: float,
    warmup_ratio: float,
    seed: int,
    batch_sampler: Any,
    max_steps: int = -1,
    weight_decay: float = 0.0,
    gradient_accumulation: int = 1,
    precision: str = "fp32",
    use_cpu: bool | None = None,
    save_steps: int | None = None,
    logging_steps: int = 500,
    drop_last: bool = False,
    **extra: Any,
) -> Any:
    """``SentenceTransformerTrainingArguments`` with ragtune's shared conventions.

    Args:
        output_dir: the checkpoints folder.
        epochs: passes over the data (``max_steps`` > 0 overrides).
        batch_size: rows (or passages) per device batch.
        learning_rate: the peak rate of the linear schedule.
        warmup_ratio: share of the steps warming the rate up, in ``[0, 1)``.
        seed: torch and data-order seed.
        batch_sampler: a sentence-transformers ``BatchSamplers`` value or sampler class.
        max_steps: stop after this many steps (-1: by epochs).
        weight_decay: AdamW weight decay.
        gradient_accumulation: batches per optimizer step.
        precision: a resolved precision (``bf16`` | ``fp16`` | ``fp32``).
        use_cpu: None: the CPU when no CUDA device is present.
        save_steps: checkpoint every this many steps, keeping the last two (None: no checkpoints).
        logging_steps: steps between logged losses.
        drop_last: drop a last short batch.
        **extra: other ``TrainingArguments`` fields (early stopping's evaluation settings).
    """
    from sentence_transformers import SentenceTransformerTrainingArguments

    if use_cpu is None:
        import torch

        use_cpu = not torch.cuda.is_available()
    saving: dict[str, Any] = (
        {"save_strategy": "no"}
        if save_steps is None
        else {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 2}
    )
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=warmup_ratio,  # below 1: a share of the steps (transformers 5)
        weight_decay=weight_decay,
        gradient_accumulation_steps=gradient_accumulation,
        lr_scheduler_type="linear",
        batch_sampler=batch_sampler,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=use_cpu,
        logging_steps=logging_steps,
        report_to="none",
        seed=seed,
        data_seed=seed,
        dataloader_drop_last=drop_last,
        disable_tqdm=True,
        **saving,
        **extra,
    )


def sentence_trainer(
    model: Any, args: Any, dataset: Any, loss: Any, *, progress: str = "Training steps",
    callbacks: list[Any] | tuple[Any, ...] = (), **extra: Any,
) -> Any:
    """A ``SentenceTransformerTrainer`` that reports its steps as ``progress`` on ragtune's display.

    ``callbacks`` come after the progress one; ``extra`` goes to the trainer
    (``evaluator``, ``optimizers``). The Trainer's own printing of its log dicts is
    removed: :class:`~ragtune.train.callbacks.ProgressCallback` logs them instead.
    """
    from sentence_transformers import SentenceTransformerTrainer
    from transformers.trainer_callback import PrinterCallback

    from ragtune.train.callbacks import ProgressCallback

    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=loss,
        callbacks=[ProgressCallback(progress), *callbacks], **extra,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer
