"""Stage 3 — pairs to a fine-tuned sentence-transformers model folder: the training loop.

Thin over ``SentenceTransformerTrainer``: the dataset columns each loss needs,
batches without duplicate texts (a duplicate would be a false in-batch
negative), warmup, a seed, bf16 where the hardware has it, checkpoints that a
re-run resumes from, and a final save that is atomic (the model folder appears
complete or not at all).

The parts live next to it: the precision in :mod:`~ragtune.train.hardware`, the
dataset in :mod:`~ragtune.train.data`, the losses in :mod:`~ragtune.train.losses`,
the optimizer groups in :mod:`~ragtune.train.optim`, resuming in
:mod:`~ragtune.train.checkpoints`.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune._io import atomic_path, fingerprint, write_json, write_text
from ragtune.encoders.loading import embedding_width, load_model, model_label
from ragtune.errors import ConfigError
from ragtune.pairs.schema import Pair
from ragtune.train.arguments import sentence_trainer, training_arguments
from ragtune.train.card import CARD_FILE, CARD_MD, render_card
from ragtune.train.checkpoints import best_step, prepare_checkpoints
from ragtune.train.config import LoraSettings, TrainConfig
from ragtune.train.data import build_dataset, pick_max_seq_length
from ragtune.train.hardware import autocast, resolve_precision
from ragtune.train.losses import PASSAGE_GROUPED, build_loss
from ragtune.train.optim import freeze_lower_layers, param_groups

__all__ = ["TrainResult", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model_dir: Path
    seconds: float
    steps: int
    train_pairs: int
    dims: list[int]
    max_seq_length: int
    precision: str
    trainable_params: int
    total_params: int
    resumed_from: str | None
    interpolation: dict[str, Any] | None = None
    best_step: int | None = None
    summary: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["model_dir"] = str(self.model_dir)
        return d


def train(
    pairs: Sequence[Pair],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    chunks: Sequence[str] | None = None,
) -> TrainResult:
    """Fine-tune ``config.base`` on ``pairs`` and save the model folder to ``out_dir``.

    Only pairs whose ``split`` is not ``val`` are trained on. A re-run with the
    same data and config resumes from the newest checkpoint in ``checkpoint_dir``.
    ``callbacks`` are ``transformers.TrainerCallback`` objects (progress, early stop).
    ``chunks``: the texts of the corpus the model will search; with
    ``config.summarize`` a last stage teaches the model that its read of a long
    chunk's start stands for the whole chunk (:mod:`ragtune.train.summary`).
    """
    import torch

    config = config or TrainConfig()
    out_dir = Path(out_dir)
    if config.query_adapter is not None:
        return _train_adapter(pairs, out_dir, config)
    train_pairs = [p for p in pairs if p.split != "val"]
    val_pairs = [p for p in pairs if p.split == "val"]
    if len(train_pairs) < 2:
        raise ConfigError(f"training needs at least 2 pairs, got {len(train_pairs)}")
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else out_dir.with_name(out_dir.name + ".checkpoints")

    torch.manual_seed(config.seed)
    prepared = _prepare_model(config, train_pairs)
    config = config.for_width(prepared.width)
    batches = _loss_and_batches(prepared, config, train_pairs)
    fp = fingerprint(config.to_dict(), [(p.query, p.positive_id) for p in train_pairs])
    resume = prepare_checkpoints(ckpt_dir, fp)

    callbacks = list(callbacks)
    evaluator, eval_args = None, {}
    if config.early_stopping_patience:
        evaluator, eval_args = _early_stopping(callbacks, config, val_pairs, pairs)
    args = _training_args(config, ckpt_dir, batches, prepared.precision, eval_args)
    trainer = _trainer(prepared.model, config, args, batches, evaluator, callbacks)

    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume)
    best = best_step(trainer.state.best_model_checkpoint) if evaluator is not None else None
    if not trainer.is_world_process_zero():
        # data-parallel (torchrun / accelerate launch): rank 0 alone mixes, summarises and writes the model
        return _result(prepared, out_dir, time.perf_counter() - t0, int(out.global_step), len(train_pairs), resume, best)
    return _finish(
        prepared, config, out_dir, t0,
        steps=int(out.global_step), best=best, resume=resume,
        train_pairs=train_pairs, val_pairs=val_pairs, pairs=pairs, chunks=chunks, ckpt_dir=ckpt_dir,
    )


@dataclass
class _Prepared:
    """The model ready to train, and the facts about it the result records."""

    model: Any
    width: int
    dims: list[int]
    reads: int  # max_seq_length of the saved model: an index embeds whole chunks
    train_seq_length: int
    precision: str
    trainable: int
    total: int


@dataclass
class _Batches:
    """The training data, its loss, and how it is cut into batches."""

    dataset: Any
    loss: Any
    sampler: Any
    units: int  # what a batch counts: distinct passages (grouped) or rows
    batch_size: int


def _prepare_model(config: TrainConfig, train_pairs: Sequence[Pair]) -> _Prepared:
    """Load the base; training sequence length, PCA rotation, LoRA or frozen layers."""
    model = load_model(config.base)
    width = embedding_width(model)
    dims = config.dims_for(width) if config.matryoshka else [width]
    texts = [p.positive for p in train_pairs] + [p.query for p in train_pairs]
    reads = int(model.max_seq_length)
    model.max_seq_length = config.max_seq_length or pick_max_seq_length(model, texts)
    train_seq_length = int(model.max_seq_length)
    precision = resolve_precision(config.precision)
    if config.rotate == "pca" and len(dims) > 1 and config.lora is None:
        from ragtune.train.rotation import insert_rotation, pca_rotation

        # encoded in the training precision: measured on the demo's 720 texts (Zen 4, bf16)
        # 14.3 s -> 6.2 s, the 64/96/192-dim principal subspaces 0.9999 the same as fp32
        with autocast(model.device, precision):
            rotation = pca_rotation(model, texts, seed=config.seed)
        insert_rotation(model, rotation)
    if config.lora is not None:
        _add_lora(model, config.lora)
    if config.freeze_layers and config.lora is None:
        freeze_lower_layers(model, config.freeze_layers)
    return _Prepared(
        model=model,
        width=width,
        dims=dims,
        reads=reads,
        train_seq_length=train_seq_length,
        precision=precision,
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total=sum(p.numel() for p in model.parameters()),
    )


def _add_lora(model: Any, lora: LoraSettings) -> None:
    from peft import IA3Config, LoraConfig, TaskType

    if lora.method == "ia3":
        targets = list(lora.target_modules) if lora.target_modules else None
        model.add_adapter(IA3Config(task_type=TaskType.FEATURE_EXTRACTION, target_modules=targets))
        return

    model.add_adapter(
        LoraConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules) if lora.target_modules else None,
        )
    )


def _loss_and_batches(prepared: _Prepared, config: TrainConfig, train_pairs: Sequence[Pair]) -> _Batches:
    """The dataset, the loss (Matryoshka over several dims) and the batch sampler."""
    from sentence_transformers.training_args import BatchSamplers

    dims = prepared.dims
    dataset = build_dataset(train_pairs, config.loss)
    grouped = config.batching == "passage" and config.loss in PASSAGE_GROUPED
    loss = build_loss(
        config.loss,
        prepared.model,
        dims if len(dims) > 1 else None,
        config.mini_batch_size,
        grouped,
        config.weights_for(dims) if len(dims) > 1 else None,
    )
    if grouped:
        from ragtune.train.passage_batches import PassageGroupedBatchSampler

        sampler: Any = PassageGroupedBatchSampler
        units = len(set(dataset["positive"]))
    else:
        sampler, units = BatchSamplers.NO_DUPLICATES, len(dataset)
    return _Batches(dataset, loss, sampler, units, min(config.batch_size, units))


def _training_args(
    config: TrainConfig, ckpt_dir: Path, batches: _Batches, precision: str, eval_args: dict[str, Any]
) -> Any:
    """``SentenceTransformerTrainingArguments`` for this config."""
    return training_arguments(
        ckpt_dir,
        epochs=config.epochs,
        max_steps=config.max_steps,
        batch_size=batches.batch_size,
        learning_rate=config.effective_learning_rate,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        gradient_accumulation=config.gradient_accumulation,
        batch_sampler=batches.sampler,
        precision=precision,
        save_steps=config.save_steps,
        logging_steps=max(1, config.save_steps // 5),
        seed=config.seed,
        drop_last=batches.units >= 2 * batches.batch_size,
        **eval_args,
    )


def _trainer(
    model: Any, config: TrainConfig, args: Any, batches: _Batches, evaluator: Any, callbacks: list[Any]
) -> Any:
    """The ``SentenceTransformerTrainer``, with AdamW over :func:`param_groups`."""
    import torch

    if config.lora is not None and config.lora.plus_ratio:
        from peft.optimizers import create_loraplus_optimizer

        optimizer = create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=config.effective_learning_rate,
            loraplus_lr_ratio=config.lora.plus_ratio, weight_decay=config.weight_decay,
        )
    else:
        optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.effective_learning_rate)
    return sentence_trainer(
        model, args, batches.dataset, batches.loss,
        callbacks=callbacks, evaluator=evaluator, optimizers=(optimizer, None),
    )


def _result(
    prepared: _Prepared, out_dir: Path, seconds: float, steps: int, train_pairs: int, resume: str | None,
    best: int | None, **extra: Any,
) -> TrainResult:
    """What a training run reports (rank 0 adds the mix and the chunk summaries in ``extra``)."""
    return TrainResult(
        model_dir=out_dir,
        seconds=round(seconds, 2),
        steps=steps,
        train_pairs=train_pairs,
        dims=prepared.dims,
        max_seq_length=prepared.train_seq_length,
        precision=prepared.precision,
        trainable_params=int(prepared.trainable),
        total_params=int(prepared.total),
        resumed_from=resume,
        best_step=best,
        **extra,
    )


def _finish(
    prepared: _Prepared,
    config: TrainConfig,
    out_dir: Path,
    t0: float,
    *,
    steps: int,
    best: int | None,
    resume: str | None,
    train_pairs: Sequence[Pair],
    val_pairs: Sequence[Pair],
    pairs: Sequence[Pair],
    chunks: Sequence[str] | None,
    ckpt_dir: Path,
) -> TrainResult:
    """Interpolate with the base, chunk summaries, then the atomic save with its card."""
    model = prepared.model
    interpolation = _interpolate(model, config, val_pairs, pairs)
    model.max_seq_length = prepared.reads
    summary = _summaries(model, config, chunks, prepared.dims, prepared.precision)
    seconds = time.perf_counter() - t0

    with atomic_path(out_dir) as tmp:
        model.save_pretrained(str(tmp)) if hasattr(model, "save_pretrained") else model.save(str(tmp))
        result = _result(prepared, out_dir, seconds, steps, len(train_pairs), resume, best,
                         interpolation=interpolation, summary=summary)
        card = {
            "base_model": model_label(config.base),
            "train": config.to_dict(),
            "result": result.to_dict(),
            "data": _data_summary(train_pairs),
        }
        write_json(tmp / CARD_FILE, card)
        write_text(tmp / CARD_MD, render_card(card, out_dir))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result


def _early_stopping(
    callbacks: list[Any], config: TrainConfig, val_pairs: Sequence[Pair], pairs: Sequence[Pair]
) -> tuple[Any, dict[str, Any]]:
    """Validation nDCG@10 every ``save_steps``; stop after ``early_stopping_patience`` checks without gain."""
    from transformers import EarlyStoppingCallback

    from ragtune.train.validation import MIN_VAL_PAIRS, NDCG_KEY, validation_evaluator

    if len(val_pairs) < MIN_VAL_PAIRS:
        raise ConfigError(
            f"early_stopping_patience={config.early_stopping_patience}: needs validation pairs "
            f"(split='val'), got {len(val_pairs)}; generate with val_fraction > 0 or set it to 0"
        )
    evaluator = validation_evaluator(val_pairs, pairs)
    callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    return evaluator, {
        "eval_strategy": "steps",
        "eval_steps": config.save_steps,
        "load_best_model_at_end": True,
        "metric_for_best_model": f"eval_{NDCG_KEY}",
        "greater_is_better": True,
    }


def _interpolate(model: Any, config: TrainConfig, val_pairs: Sequence[Pair], pairs: Sequence[Pair]) -> dict[str, Any] | None:
    """WiSE-FT mix of the tuned and base weights, as ``config.interpolate`` says; the record for the card."""
    from ragtune.train.interpolate import DEFAULT_ALPHA, base_state, choose_mix, mix_weights
    from ragtune.train.validation import MIN_VAL_PAIRS

    mode = config.interpolate
    if mode == "off":
        return None
    if config.lora is not None:
        log.info("interpolate: skipped for LoRA (the adapter is already a small step from the base)")
        return None
    base = load_model(config.base)
    model.eval()
    if mode == "auto" and len(val_pairs) >= MIN_VAL_PAIRS:
        return choose_mix(model, base, val_pairs, pairs).to_dict()
    alpha = DEFAULT_ALPHA if mode == "auto" else float(mode)
    mix_weights(model, base_state(base), alpha)
    how = (
        "the training config"
        if mode != "auto"
        else f"default ({len(val_pairs)} validation pairs, need {MIN_VAL_PAIRS} to choose)"
    )
    log.info("interpolate: alpha %.2f, %s", alpha, how)
    return {"alpha": alpha, "chosen_by": how}


def _summaries(
    model: Any, config: TrainConfig, chunks: Sequence[str] | None, dims: list[int], precision: str
) -> dict[str, Any] | None:
    """The chunk-summary stage when ``chunks`` are given and ``config.summarize`` is on; its record."""
    if not chunks or not config.summarize:
        return None
    from ragtune.train.summary import train_summaries

    return train_summaries(
        model, chunks, dims, config.summary, param_groups(model, config), precision=precision, seed=config.seed,
        max_steps=config.max_steps,
    )


def _train_adapter(pairs: Sequence[Pair], out_dir: Path, config: TrainConfig) -> TrainResult:
    from ragtune.train.query_adapter import train_query_adapter

    width = embedding_width(load_model(config.base))
    dims = config.dims_for(width) if config.matryoshka else [width]
    r = train_query_adapter(pairs, out_dir, config.base, dims, config.query_adapter, seed=config.seed,
                            max_steps=config.max_steps)
    return TrainResult(
        model_dir=out_dir,
        seconds=r["seconds"],
        steps=r["steps"],
        train_pairs=r["train_pairs"],
        dims=r["dims"],
        max_seq_length=0,
        precision="fp32",
        trainable_params=r["trainable_params"],
        total_params=r["total_params"],
        resumed_from=None,
    )


def _data_summary(pairs: Sequence[Pair]) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for p in pairs:
        kinds[p.source] = kinds.get(p.source, 0) + 1
    return {
        "pairs": len(pairs),
        "chunks": len({p.positive_id for p in pairs}),
        "with_negatives": sum(1 for p in pairs if p.negatives),
        "sources": kinds,
    }
