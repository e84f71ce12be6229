"""Stage 3 — pairs to a fine-tuned sentence-transformers model folder.

Thin over ``SentenceTransformerTrainer``: the dataset columns each loss needs,
batches without duplicate texts (a duplicate would be a false in-batch
negative), warmup, a seed, bf16 where the hardware has it, checkpoints that a
re-run resumes from, and a final save that is atomic (the model folder appears
complete or not at all).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune._io import atomic_path, write_json
from ragtune.errors import ConfigError
from ragtune.models import embedding_width, load_model, model_label
from ragtune.pairs.schema import Pair
from ragtune.rundir import fingerprint
from ragtune.train.card import CARD_FILE
from ragtune.train.config import TrainConfig
from ragtune.train.losses import LABELLED, NEEDS_NEGATIVES, build_loss

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


def cpu_has_bf16() -> bool:
    """True when this CPU runs bf16 matrix work natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """``auto`` → bf16 on a GPU or CPU that supports it, else fp32.

    bf16 asked for on a CPU without native bf16 is kept but warned about: it is
    emulated there, and measured on an AMD EPYC without AVX-512 a training step
    took 9x as long as in fp32 (112 s vs 12.4 s for 16 chunks).
    """
    import torch

    if precision != "auto":
        if precision == "bf16" and not torch.cuda.is_available() and not cpu_has_bf16():
            log.warning(
                "precision='bf16' on a CPU without AVX512-BF16/AMX: emulated and several times slower "
                "than fp32; use precision='auto' (or 'fp32')"
            )
        return precision

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


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
    if with_neg and len(with_neg) == len(pairs):
        # MNRL takes any number of negative columns: use as many as every pair has
        for i in range(min(len(p.negatives) for p in pairs)):
            cols[f"negative_{i + 1}"] = [p.negatives[i]["text"] for p in pairs]
    elif with_neg:
        log.warning("%d of %d pairs have negatives; training with in-batch negatives only", len(with_neg), len(pairs))
    return Dataset.from_dict(cols)


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
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.training_args import BatchSamplers
    from transformers.trainer_utils import get_last_checkpoint

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
    model = load_model(config.base)
    width = embedding_width(model)
    dims = config.dims_for(width) if config.matryoshka else [width]
    texts = [p.positive for p in train_pairs] + [p.query for p in train_pairs]
    reads = int(model.max_seq_length)  # what the saved model reads: an index embeds whole chunks
    model.max_seq_length = config.max_seq_length or pick_max_seq_length(model, texts)
    train_seq_length = int(model.max_seq_length)
    precision = resolve_precision(config.precision)
    rotated = config.rotate == "pca" and len(dims) > 1 and config.lora is None
    if rotated:
        from ragtune.train.rotation import insert_rotation, pca_rotation

        insert_rotation(model, pca_rotation(model, texts, seed=config.seed))

    if config.lora is not None:
        from peft import LoraConfig, TaskType

        lora = config.lora
        model.add_adapter(
            LoraConfig(
                task_type=TaskType.FEATURE_EXTRACTION,
                r=lora.rank,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules) if lora.target_modules else None,
            )
        )
    if config.freeze_layers and config.lora is None:
        freeze_lower_layers(model, config.freeze_layers)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    dataset = build_dataset(train_pairs, config.loss)
    grouped = config.batching == "passage" and config.loss in ("mnrl", "mnrl-symmetric")
    loss = build_loss(
        config.loss,
        model,
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
    batch_size = min(config.batch_size, units)

    fp = fingerprint(config.to_dict(), [(p.query, p.positive_id) for p in train_pairs])
    resume = _prepare_checkpoints(ckpt_dir, fp, get_last_checkpoint)

    callbacks = list(callbacks)
    evaluator, eval_args = None, {}
    if config.early_stopping_patience:
        evaluator, eval_args = _early_stopping(callbacks, config, val_pairs, pairs)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=config.effective_learning_rate,
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        lr_scheduler_type="linear",
        batch_sampler=sampler,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=max(1, config.save_steps // 5),
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        dataloader_drop_last=units >= 2 * batch_size,
        disable_tqdm=False,
        **eval_args,
    )
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.effective_learning_rate)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=callbacks or None,
        optimizers=(optimizer, None),
    )
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume)
    best_step = _best_step(trainer.state.best_model_checkpoint) if evaluator is not None else None
    interpolation = _interpolate(model, config, val_pairs, pairs)
    model.max_seq_length = reads
    summary = _summaries(model, config, chunks, dims, precision)
    seconds = time.perf_counter() - t0

    with atomic_path(out_dir) as tmp:
        model.save_pretrained(str(tmp)) if hasattr(model, "save_pretrained") else model.save(str(tmp))
        result = TrainResult(
            model_dir=out_dir,
            seconds=round(seconds, 2),
            steps=int(out.global_step),
            train_pairs=len(train_pairs),
            dims=dims,
            max_seq_length=train_seq_length,
            precision=precision,
            trainable_params=int(trainable),
            total_params=int(total),
            resumed_from=resume,
            interpolation=interpolation,
            best_step=best_step,
            summary=summary,
        )
        write_json(
            tmp / CARD_FILE,
            {
                "base_model": model_label(config.base),
                "train": config.to_dict(),
                "result": result.to_dict(),
                "data": _data_summary(train_pairs),
            },
        )
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


def _best_step(checkpoint: str | None) -> int | None:
    try:
        return int(str(checkpoint).rsplit("-", 1)[-1]) if checkpoint else None
    except ValueError:
        return None


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
        model, chunks, dims, config.summary, param_groups(model, config), precision=precision, seed=config.seed
    )


def _train_adapter(pairs: Sequence[Pair], out_dir: Path, config: TrainConfig) -> TrainResult:
    from ragtune.train.query_adapter import train_query_adapter

    width = embedding_width(load_model(config.base))
    dims = config.dims_for(width) if config.matryoshka else [width]
    r = train_query_adapter(pairs, out_dir, config.base, dims, config.query_adapter, seed=config.seed)
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


_NO_DECAY = ("bias", "LayerNorm", "layer_norm", "layernorm")


def param_groups(model: Any, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases/norms; embeddings at ``embedding_lr_scale`` × lr."""
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_emb = ".embeddings." in f".{name}"
        decay = not any(k in name for k in _NO_DECAY)
        groups.setdefault((is_emb, decay), []).append(p)
    out = []
    for (is_emb, decay), params in groups.items():
        lr = config.effective_learning_rate * (config.embedding_lr_scale if is_emb else 1.0)
        if lr == 0:
            for p in params:
                p.requires_grad_(False)
            continue
        out.append({"params": params, "lr": lr, "weight_decay": config.weight_decay if decay else 0.0})
    return out


def freeze_lower_layers(model: Any, n_layers: int) -> int:
    """Freeze the token embeddings and the lowest ``n_layers`` transformer blocks; returns params frozen."""
    import re

    frozen = 0
    pattern = re.compile(r"\.(?:layer|layers|h|block)\.(\d+)\.")
    for name, p in model.named_parameters():
        m = pattern.search(name)
        if ".embeddings." in f".{name}" or (m and int(m.group(1)) < n_layers):
            p.requires_grad_(False)
            frozen += p.numel()
    if frozen == 0:
        log.warning("freeze_layers=%d matched no parameters of this architecture", n_layers)
    return frozen


def _prepare_checkpoints(ckpt_dir: Path, fp: str, get_last_checkpoint: Any) -> str | None:
    """Return the checkpoint to resume from, clearing checkpoints of other data/config."""
    marker = ckpt_dir / "ragtune_fingerprint.json"
    if ckpt_dir.exists():
        try:
            same = json.loads(marker.read_text())["fingerprint"] == fp
        except (OSError, ValueError, KeyError):
            same = False
        if not same:
            shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"fingerprint": fp})
    last = get_last_checkpoint(str(ckpt_dir))
    if last:
        log.info("resuming training from %s", last)
    return last


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
