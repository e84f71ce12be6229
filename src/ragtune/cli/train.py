"""``ragtune train``: fine-tune an encoder on pairs, or on labelled texts with ``--task classification``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import typer

from ragtune import console
from ragtune.cli import options as o
from ragtune.cli.output import echo, showing_progress
from ragtune.errors import RagtuneError
from ragtune.train.classification import LOSSES as CLASSIFICATION_LOSSES
from ragtune.train.config import Batching, Rotate

D = o.TrainDefaults


def train(
    pairs: Path | None = typer.Argument(None, help="pairs.jsonl or a LlamaIndex EmbeddingQAFinetuneDataset JSON."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write."),
    task: o.Task = o.RETRIEVAL,
    data: Path | None = typer.Option(None, "--data", "-d", help=o.LABELLED_HELP + " Trains on its train part, the SetFit way."),
    base: str | None = typer.Option(None, "--base"),
    epochs: float = typer.Option(D.epochs, "--epochs"),
    loss: str = typer.Option(D.loss, "--loss", help=f"{o.LOSS_HELP}; --task classification: {' | '.join(CLASSIFICATION_LOSSES)}"),
    batch_size: int = typer.Option(D.batch_size, "--batch-size"),
    learning_rate: o.LearningRate = None,
    warmup_ratio: o.WarmupRatio = None,
    weight_decay: o.WeightDecay = None,
    gradient_accumulation: o.GradientAccumulation = None,
    mixed_precision: o.MixedPrecision = None,
    max_steps: int = typer.Option(D.max_steps, "--max-steps", help="Stop after this many steps (overrides epochs)."),
    max_seq_length: int | None = typer.Option(D.max_seq_length, "--max-seq-length"),
    dims: str | None = typer.Option(None, "--dims", help="Matryoshka dims, comma-separated (default: full, 1/2, 1/4, 1/6)."),
    no_matryoshka: bool = typer.Option(not D.matryoshka, "--no-matryoshka"),
    lora_r: o.LoraR = None,
    lora_alpha: o.LoraAlpha = None,
    lora_dropout: o.LoraDropout = None,
    lora_plus_ratio: o.LoraPlusRatio = None,
    lora_lr: o.LoraLr = None,
    peft_method: o.PeftMethod = None,
    query_adapter: bool = typer.Option(False, "--query-adapter", help="Train only a linear map on query vectors: existing document vectors stay valid."),
    freeze_layers: int = typer.Option(D.freeze_layers, "--freeze-layers", help="Freeze embeddings and the lowest N transformer layers."),
    interpolate: str = typer.Option(
        D.interpolate, "--interpolate",
        help="WiSE-FT mix of tuned and base weights: auto (chosen on the validation pairs; 0.5 without them), off, or an alpha in (0, 1].",
    ),
    early_stop: int = typer.Option(
        D.early_stopping_patience, "--early-stop",
        help="Stop after N validation checks without gain and keep the best checkpoint (needs val pairs).",
    ),
    batching: str = typer.Option(
        D.batching, "--batching",
        help=" | ".join(get_args(Batching)) + ": each passage once per batch with all its queries, or one row per pair and no text twice in a batch",
    ),
    rotate: str = typer.Option(
        D.rotate, "--rotate",
        help=" | ".join(get_args(Rotate)) + ": rotate onto the principal axes before Matryoshka training, or not",
    ),
    chunks: Path | None = typer.Option(
        None, "--chunks",
        help="chunks.jsonl of the corpus you will search (ragtune generate writes OUT.chunks.jsonl): a last stage "
        "makes the model's read of each long chunk stand for the whole chunk.",
    ),
    summarize: bool = typer.Option(D.summarize, "--summarize/--no-summarize", help="Run the chunk-summary stage when --chunks is given."),
) -> None:
    """Fine-tune an encoder on pairs (or on labelled texts with --task classification); writes a sentence-transformers folder."""
    from ragtune.config import build_config, parse_sets
    from ragtune.corpus.reader import load_chunks
    from ragtune.pairs import load_pairs
    from ragtune.train import AdapterSettings, TrainConfig
    from ragtune.train import train as train_model

    named = o.training_options(learning_rate, warmup_ratio, weight_decay, gradient_accumulation, mixed_precision,
                               lora_r, lora_alpha, lora_dropout, lora_plus_ratio, lora_lr, peft_method)
    if o.task(task, data) == "classification":
        _train_classification(data, out, base, epochs, None if loss == D.loss else loss, batch_size, max_steps, named)
        return
    if pairs is None or data is not None:
        raise RagtuneError("train: give PAIRS (pairs.jsonl or a LlamaIndex dataset JSON), or --task classification --data D")
    cfg = build_config(TrainConfig, dict(
        parse_sets(o.given(named)),
        base=base,
        epochs=epochs,
        loss=loss,
        batch_size=batch_size,
        max_steps=max_steps,
        max_seq_length=max_seq_length,
        matryoshka=not no_matryoshka,
        matryoshka_dims=o.dims(dims),
        query_adapter=AdapterSettings() if query_adapter else None,
        freeze_layers=freeze_layers,
        interpolate=interpolate,
        early_stopping_patience=early_stop,
        batching=batching,
        rotate=rotate,
        summarize=summarize,
    ))
    train_pairs = load_pairs(pairs)
    texts = [c.text for c in load_chunks(chunks)] if chunks else None
    with showing_progress():
        result = train_model(train_pairs, out, cfg, chunks=texts)
    if not console.is_main_process():
        return  # data-parallel: rank 0 reports (and alone wrote the model)
    echo(
        f"trained {result.steps} steps on {result.train_pairs} pairs in {result.seconds:.1f} s "
        f"({result.precision}, seq {result.max_seq_length}, dims {result.dims}"
        + (f", mixed {result.interpolation['alpha']} tuned / base" if result.interpolation else "")
        + f") → {out}"
    )
    if result.summary and result.summary.get("chunks"):
        s = result.summary
        echo(
            f"chunk summaries: {s['chunks']} long chunks, distance to whole-chunk targets "
            f"{s['distance_before']} → {s['distance_after']} in {s['seconds']} s"
        )


def _train_classification(
    data: Path, out: Path, base: str | None, epochs: float, loss: str | None, batch_size: int, max_steps: int,
    named: dict[str, Any],
) -> None:
    """``train --task classification``: tune on the train part of the labelled set's fixed split."""
    from ragtune.evaluation.classification import load_labelled
    from ragtune.train.classification import train_classification

    if any(k.startswith("lora.") or k == "gradient_accumulation" for k in named):
        raise RagtuneError("--task classification trains all weights: drop the --lora-* / --gradient-accumulation options")
    train_part, _ = load_labelled(data).split()
    # the options given; train_classification's own defaults for the rest
    given = {k: named[k] for k in ("learning_rate", "warmup_ratio", "weight_decay", "precision") if k in named}
    with showing_progress():
        r = train_classification(
            train_part.texts, train_part.labels, out, base=base, epochs=epochs, batch_size=batch_size,
            max_steps=max_steps, **({"loss": loss} if loss else {}), **given,
        )
    echo(f"trained {r.steps} steps on {r.texts} labelled texts ({len(r.labels)} labels, {r.loss}, {r.precision}) "
         f"in {r.seconds:.1f} s → {out}")
