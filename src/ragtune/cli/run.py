"""``ragtune run``: the whole job, chunks → pairs → tuned model → index → before/after report."""

from __future__ import annotations

from pathlib import Path

import typer

from ragtune import console
from ragtune.cli import options as o
from ragtune.cli.output import echo, is_quiet, print_summary, showing_progress
from ragtune.encoders.runtime import FORMATS


def run(
    corpus: Path = typer.Argument(..., help="A document or a folder of documents (PDF, Markdown, text, HTML, JSONL)."),
    workdir: Path = typer.Option(..., "--workdir", "-w", help="Run directory for every artifact."),
    config: Path | None = typer.Option(
        None, "--config", help="Settings file: TOML (tables chunk, generation, train, train.lora ...) or a run.json to replay."
    ),
    sets: list[str] = typer.Option(
        [], "--set", metavar="SECTION.FIELD=VALUE",
        help="Any setting of any stage, e.g. --set train.lora.rank=16 --set generation.negatives=3 (repeatable; wins over --config and the options below).",
    ),
    base: str | None = typer.Option(None, "--base", help="Base model: folder or hub id (default: bundled all-MiniLM-L6-v2)."),
    epochs: float | None = typer.Option(None, "--epochs", help=f"Training epochs (default {o.TrainDefaults.epochs})."),
    max_pairs: int | None = typer.Option(None, "--max-pairs", help="Cap on generated pairs (spread over chunks)."),
    eval_data: Path | None = typer.Option(None, "--eval", help="Labelled set: LlamaIndex dataset JSON or BEIR folder."),
    collection: o.Collection = None,
    store: o.Store = None,
    loss: str | None = typer.Option(None, "--loss", help=f"{o.LOSS_HELP} (default {o.TrainDefaults.loss})."),
    batch_size: int | None = typer.Option(None, "--batch-size", help=f"default {o.TrainDefaults.batch_size}"),
    learning_rate: o.LearningRate = None,
    warmup_ratio: o.WarmupRatio = None,
    weight_decay: o.WeightDecay = None,
    gradient_accumulation: o.GradientAccumulation = None,
    mixed_precision: o.MixedPrecision = None,
    lora_r: o.LoraR = None,
    lora_alpha: o.LoraAlpha = None,
    lora_dropout: o.LoraDropout = None,
    lora_plus_ratio: o.LoraPlusRatio = None,
    lora_lr: o.LoraLr = None,
    peft_method: o.PeftMethod = None,
    chunk_size: o.ChunkSize = None,
    long_chunks: bool | None = typer.Option(None, "--long/--no-long", help="Also evaluate best-window (long-chunk) search (default on)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop training after this many steps (a quick smoke run)."),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length", help="Training sequence length (default: from the data)."),
    llm: str | None = typer.Option(None, "--llm", help="provider:model (e.g. openai:gpt-4o-mini, ollama:llama3.1) to write the questions and judge RAG quality; needs the llm extra."),
    summarize: bool | None = typer.Option(
        None, "--summarize/--no-summarize",
        help="Last training stage: the model's read of each long chunk learns to stand for the whole chunk (default on; helps one-vector-per-chunk indexes).",
    ),
    export: str | None = typer.Option(
        None, "--export", help=f"Last stage: write the tuned model in these forms too, comma-separated ({', '.join(FORMATS)})."
    ),
    baseline: str | None = typer.Option(None, "--baseline", help=o.HOSTED_HELP + " Cache: WORKDIR/cache/embeddings."),
    queries: Path | None = typer.Option(None, "--queries", help=o.QUERIES_HELP),
    judge_queries: o.JudgeQueries = None,
) -> None:
    """The main job: chunks → pairs → tuned model → vector index → before/after report.

    Settings come from --config, then these options, then --set; run.json records the result.
    The collection (default ragtune) goes to WORKDIR/qdrant unless --store names another place.
    """
    from ragtune.config import load_config_file, merge, parse_sets
    from ragtune.pipeline.stages import preflight, resolve_run_config, run_pipeline

    options = {
        "train.base": base, "train.epochs": epochs, "generation.max_pairs": max_pairs,
        "eval_data": str(eval_data) if eval_data else None, "collection": collection, "qdrant": store,
        "train.loss": loss, "train.batch_size": batch_size,
        "chunk.chunk_size": chunk_size, "long_chunks": long_chunks, "train.max_steps": max_steps,
        "train.max_seq_length": max_seq_length, "generation.llm": llm, "train.summarize": summarize,
        "export": o.formats(export) if export else None, "baseline": baseline,
        "queries": str(queries) if queries else None, "judge_queries": judge_queries,
        **{f"train.{k}": v for k, v in o.training_options(
            learning_rate, warmup_ratio, weight_decay, gradient_accumulation, mixed_precision,
            lora_r, lora_alpha, lora_dropout, lora_plus_ratio, lora_lr, peft_method,
        ).items()},
    }
    layers = merge(load_config_file(config) if config else {}, parse_sets(o.given(options)), parse_sets(sets), {"corpus": str(corpus)})
    cfg = resolve_run_config(layers)
    given = preflight(cfg, workdir)  # one-line errors before the run directory or any long work
    log_file = console.log_to(Path(workdir) / "logs")
    with showing_progress():
        report = run_pipeline(cfg, workdir, given, checked=True)
    print_summary(report, workdir)
    if not is_quiet():
        echo(f"log: {log_file}")
