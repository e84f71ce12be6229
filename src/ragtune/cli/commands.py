"""The ``ragtune`` command line: only wiring of the stages, progress bars and errors.

Every input problem ends in a one-line ``error: ...`` naming the path or
option, and exit code 1; one unreadable file in a corpus is a warning.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ragtune import __version__, console, progress
from ragtune.encoders.runtime import BACKENDS, FORMATS
from ragtune.errors import RagtuneError
from ragtune.train.classification import LOSSES as _CLS_LOSSES
from ragtune.train.config import LOSSES as _LOSSES
from ragtune.train.config import TrainConfig as _Defaults

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Fine-tune the retriever of a RAG pipeline on your corpus, index it in Qdrant, and report before/after.",
)

_QUIET = False
_BACKEND_HELP = f"{' | '.join(BACKENDS)}: run a form `ragtune export` wrote (default file: the int8 one when present)."
_WORKERS_HELP = "Encode in N CPU worker processes (every GPU is used when there are several)."
_BACKEND_FILE_HELP = "The exported file to run, e.g. MODEL/onnx/model.onnx."
_LOSS_HELP = " | ".join(_LOSSES)
_TASK_HELP = "retrieval | classification (labelled texts: a logistic-regression probe on the embeddings, MTEB's way)."
_LABELLED_HELP = "--task classification: JSONL/CSV with text,label (optional split) columns, or a folder whose subfolders are the labels (a corpus folder works)."
_HOSTED_HELP = (
    "A hosted embedding model scored beside base and tuned (plain mode; time, tokens and cost in the report), its vectors "
    "cached: openai:text-embedding-3-small, http://127.0.0.1:8000/v1[#MODEL] (key: RAGTUNE_BASELINE_KEY) or ollama:MODEL."
)


@contextlib.contextmanager
def _showing_progress() -> Iterator[None]:
    """ragtune's one progress display for the command's long work (none with --quiet)."""
    with progress.use(console.display(_QUIET)):
        yield


def _echo(msg: str) -> None:
    typer.echo(msg)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ragtune {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display: print only the result."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show third-party logs and progress bars (always kept in WORKDIR/logs/ by run)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    global _QUIET
    _QUIET = quiet
    console.setup(quiet=quiet, verbose=verbose)


#: autotrain's option names (the LoRA trainer CLI people know), shared by ``train`` and ``run``
_AUTOTRAIN_HELP = {
    "warmup": "Share of steps warming the learning rate up (default 0.1).",
    "decay": "AdamW weight decay (default 0.01).",
    "accum": "Batches whose gradients add up to one optimizer step (default 1).",
    "precision": "auto | bf16 | fp16 | none (fp32); auto: bf16 where the hardware runs it.",
    "lora_r": "Train a LoRA adapter of this rank instead of all weights (any --lora-* option turns LoRA on).",
    "lora_alpha": "LoRA alpha (default 32).",
    "lora_dropout": "LoRA dropout (default 0.05).",
    "lora_plus": "LoRA+: B matrices learn at this multiple of the rate (e.g. 16).",
    "lora_lr": "LoRA's learning rate (default 1e-3); --lr sets it too when LoRA is on and this is not given.",
    "peft": "lora | ia3: the peft adapter to train ((IA)3 stands in for bottleneck adapters; see ragtune.train.LoraSettings).",
}


class _Training:
    """Training options ``train`` and ``run`` share (autotrain's names), declared once."""

    learning_rate = Annotated[float | None, typer.Option("--lr", "--learning-rate", help=f"default {_Defaults.learning_rate}")]
    warmup_ratio = Annotated[float | None, typer.Option("--warmup-ratio", help=_AUTOTRAIN_HELP["warmup"])]
    weight_decay = Annotated[float | None, typer.Option("--weight-decay", help=_AUTOTRAIN_HELP["decay"])]
    gradient_accumulation = Annotated[int | None, typer.Option("--gradient-accumulation", "--gradient-accumulation-steps", help=_AUTOTRAIN_HELP["accum"])]
    mixed_precision = Annotated[str | None, typer.Option("--mixed-precision", "--precision", help=_AUTOTRAIN_HELP["precision"])]
    lora_r = Annotated[int | None, typer.Option("--lora-r", "--lora-rank", help=_AUTOTRAIN_HELP["lora_r"])]
    lora_alpha = Annotated[int | None, typer.Option("--lora-alpha", help=_AUTOTRAIN_HELP["lora_alpha"])]
    lora_dropout = Annotated[float | None, typer.Option("--lora-dropout", help=_AUTOTRAIN_HELP["lora_dropout"])]
    lora_plus_ratio = Annotated[float | None, typer.Option("--lora-plus-ratio", help=_AUTOTRAIN_HELP["lora_plus"])]
    lora_lr = Annotated[float | None, typer.Option("--lora-lr", help=_AUTOTRAIN_HELP["lora_lr"])]
    peft_method = Annotated[str | None, typer.Option("--peft-method", help=_AUTOTRAIN_HELP["peft"])]


def _training_options(
    lr: float | None, warmup_ratio: float | None, weight_decay: float | None, gradient_accumulation: int | None,
    mixed_precision: str | None, lora_r: int | None, lora_alpha: int | None, lora_dropout: float | None,
    lora_plus_ratio: float | None, lora_lr: float | None, peft_method: str | None = None,
) -> dict[str, Any]:
    """autotrain-named options → ``TrainConfig`` fields (dotted, for ``--set``-style merging); None: not given."""
    precision = {"none": "fp32", "no": "fp32"}.get(str(mixed_precision).lower(), mixed_precision) if mixed_precision else None
    out: dict[str, Any] = {
        "learning_rate": lr, "warmup_ratio": warmup_ratio, "weight_decay": weight_decay,
        "gradient_accumulation": gradient_accumulation, "precision": precision,
    }
    lora = {"method": peft_method, "rank": lora_r, "alpha": lora_alpha, "dropout": lora_dropout,
            "plus_ratio": lora_plus_ratio, "learning_rate": lora_lr if lora_lr is not None else lr}
    if any(v is not None for k, v in lora.items() if k != "learning_rate"):
        out.update({f"lora.{k}": v for k, v in lora.items()})
    return {k: v for k, v in out.items() if v is not None}


@app.command()
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
    epochs: float | None = typer.Option(None, "--epochs", help=f"Training epochs (default {_Defaults.epochs})."),
    max_pairs: int | None = typer.Option(None, "--max-pairs", help="Cap on generated pairs (spread over chunks)."),
    eval_data: Path | None = typer.Option(None, "--eval", help="Labelled set: LlamaIndex dataset JSON or BEIR folder."),
    collection: str | None = typer.Option(None, "--collection", help="Qdrant collection name (default ragtune)."),
    qdrant: str | None = typer.Option(None, "--qdrant", help="Qdrant folder or URL (default: WORKDIR/qdrant)."),
    loss: str | None = typer.Option(None, "--loss", help=f"{_LOSS_HELP} (default {_Defaults.loss})."),
    batch_size: int | None = typer.Option(None, "--batch-size", help=f"default {_Defaults.batch_size}"),
    learning_rate: _Training.learning_rate = None,
    warmup_ratio: _Training.warmup_ratio = None,
    weight_decay: _Training.weight_decay = None,
    gradient_accumulation: _Training.gradient_accumulation = None,
    mixed_precision: _Training.mixed_precision = None,
    lora_r: _Training.lora_r = None,
    lora_alpha: _Training.lora_alpha = None,
    lora_dropout: _Training.lora_dropout = None,
    lora_plus_ratio: _Training.lora_plus_ratio = None,
    lora_lr: _Training.lora_lr = None,
    peft_method: _Training.peft_method = None,
    chunk_size: int | None = typer.Option(None, "--chunk-size", help="Chunk size in tokens (LlamaIndex default 1024)."),
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
    baseline: str | None = typer.Option(None, "--baseline", help=_HOSTED_HELP + " Cache: WORKDIR/cache/embeddings."),
) -> None:
    """The main job: chunks → pairs → tuned model → Qdrant index → before/after report.

    Settings come from --config, then these options, then --set; run.json records the result.
    """
    from ragtune.config import load_config_file, merge, parse_sets
    from ragtune.pipeline.stages import preflight, resolve_run_config, run_pipeline

    options = {
        "train.base": base, "train.epochs": epochs, "generation.max_pairs": max_pairs,
        "eval_data": str(eval_data) if eval_data else None, "collection": collection, "qdrant": qdrant,
        "train.loss": loss, "train.batch_size": batch_size,
        "chunk.chunk_size": chunk_size, "long_chunks": long_chunks, "train.max_steps": max_steps,
        "train.max_seq_length": max_seq_length, "generation.llm": llm, "train.summarize": summarize,
        "export": _formats(export) if export else None, "baseline": baseline,
        **{f"train.{k}": v for k, v in _training_options(
            learning_rate, warmup_ratio, weight_decay, gradient_accumulation, mixed_precision,
            lora_r, lora_alpha, lora_dropout, lora_plus_ratio, lora_lr, peft_method,
        ).items()},
    }
    given = parse_sets(f"{k}={json.dumps(v)}" for k, v in options.items() if v is not None)
    layers = merge(load_config_file(config) if config else {}, given, parse_sets(sets), {"corpus": str(corpus)})
    cfg = resolve_run_config(layers)
    given = preflight(cfg, workdir)  # one-line errors before the run directory or any long work
    log_file = console.log_to(Path(workdir) / "logs")
    with _showing_progress():
        report = run_pipeline(cfg, workdir, given, checked=True)
    _print_summary(report, workdir)
    if not _QUIET:
        _echo(f"log: {log_file}")


@app.command()
def generate(
    corpus: Path = typer.Argument(..., help="A document or a folder of documents."),
    out: Path = typer.Option(..., "--out", "-o", help="pairs.jsonl to write (chunks go beside it as OUT.chunks.jsonl)."),
    base: str | None = typer.Option(None, "--base", help="Model whose tokenizer sets the windows."),
    max_pairs: int | None = typer.Option(None, "--max-pairs"),
    chunk_size: int = typer.Option(1024, "--chunk-size"),
    val_fraction: float = typer.Option(0.15, "--val-fraction", help="Share of documents held out for validation."),
    llm: str | None = typer.Option(None, "--llm", help="provider:model to write the questions (default: the offline generator)."),
    questions_per_chunk: int = typer.Option(2, "--questions-per-chunk", help="LLM generator: questions per window."),
    llm_cache: Path | None = typer.Option(None, "--llm-cache", help="LLM answers cache (default: OUT.llm-cache/); re-runs never pay twice."),
) -> None:
    """Generate synthetic query → passage pairs from a corpus (offline by default, or with an LLM)."""
    import time

    from ragtune.corpus.reader import ChunkConfig, load_corpus, save_chunks
    from ragtune.encoders.encoder import Encoder
    from ragtune.pairs import GenerationConfig, generate_pairs, make_generator, save_pairs

    t0 = time.perf_counter()
    with _showing_progress():
        res = load_corpus(corpus, ChunkConfig(chunk_size=chunk_size))
    encoder = Encoder(base)
    cfg = GenerationConfig(max_pairs=max_pairs, val_fraction=val_fraction, llm=llm, questions_per_chunk=questions_per_chunk)
    cache = llm_cache or out.with_name(out.stem + ".llm-cache")
    with _showing_progress():
        gen = generate_pairs(
            res.chunks,
            encoder.tokenizer,
            encoder.window_spec(),
            cfg,
            generator=make_generator(cfg, cache_dir=cache if llm else None),
            encoder=encoder,
        )
    save_pairs(out, gen.pairs)
    chunks_out = out.with_name(out.stem + ".chunks.jsonl")
    save_chunks(chunks_out, res.chunks)
    secs = time.perf_counter() - t0
    drops = ", ".join(f"{k} {v}" for k, v in gen.dropped.items()) or "none"
    _echo(
        f"{len(res.chunks)} chunks from {len(res.files)} files ({len(res.skipped)} skipped), "
        f"{gen.windows} windows → {gen.generated} generated, {len(gen.pairs)} pairs kept "
        f"(dropped: {drops}); {sum(p.split == 'val' for p in gen.pairs)} held out for validation; {secs:.1f} s"
    )
    _echo(f"wrote {out} and {chunks_out}")


@app.command("train")
def train_cmd(
    pairs: Path | None = typer.Argument(None, help="pairs.jsonl or a LlamaIndex EmbeddingQAFinetuneDataset JSON."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write."),
    task: str = typer.Option("retrieval", "--task", help=_TASK_HELP),
    data: Path | None = typer.Option(None, "--data", "-d", help=_LABELLED_HELP + " Trains on its train part, the SetFit way."),
    base: str | None = typer.Option(None, "--base"),
    epochs: float = typer.Option(_Defaults.epochs, "--epochs"),
    loss: str = typer.Option(_Defaults.loss, "--loss", help=f"{_LOSS_HELP}; --task classification: {' | '.join(_CLS_LOSSES)}"),
    batch_size: int = typer.Option(_Defaults.batch_size, "--batch-size"),
    learning_rate: _Training.learning_rate = None,
    warmup_ratio: _Training.warmup_ratio = None,
    weight_decay: _Training.weight_decay = None,
    gradient_accumulation: _Training.gradient_accumulation = None,
    mixed_precision: _Training.mixed_precision = None,
    max_steps: int = typer.Option(-1, "--max-steps", help="Stop after this many steps (overrides epochs)."),
    max_seq_length: int | None = typer.Option(None, "--max-seq-length"),
    dims: str | None = typer.Option(None, "--dims", help="Matryoshka dims, comma-separated (default: full, 1/2, 1/4, 1/6)."),
    no_matryoshka: bool = typer.Option(False, "--no-matryoshka"),
    lora_r: _Training.lora_r = None,
    lora_alpha: _Training.lora_alpha = None,
    lora_dropout: _Training.lora_dropout = None,
    lora_plus_ratio: _Training.lora_plus_ratio = None,
    lora_lr: _Training.lora_lr = None,
    peft_method: _Training.peft_method = None,
    query_adapter: bool = typer.Option(False, "--query-adapter", help="Train only a linear map on query vectors: existing document vectors stay valid."),
    freeze_layers: int = typer.Option(0, "--freeze-layers", help="Freeze embeddings and the lowest N transformer layers."),
    interpolate: str = typer.Option(
        "auto", "--interpolate",
        help="WiSE-FT mix of tuned and base weights: auto (chosen on the validation pairs; 0.5 without them), off, or an alpha in (0, 1].",
    ),
    early_stop: int = typer.Option(0, "--early-stop", help="Stop after N validation checks without gain and keep the best checkpoint (needs val pairs)."),
    batching: str = typer.Option("passage", "--batching", help="passage (each passage once per batch with all its queries) | no-duplicates"),
    rotate: str = typer.Option("pca", "--rotate", help="pca (rotate onto principal axes before Matryoshka training) | none"),
    chunks: Path | None = typer.Option(
        None, "--chunks",
        help="chunks.jsonl of the corpus you will search (ragtune generate writes OUT.chunks.jsonl): a last stage "
        "makes the model's read of each long chunk stand for the whole chunk.",
    ),
    summarize: bool = typer.Option(True, "--summarize/--no-summarize", help="Run the chunk-summary stage when --chunks is given."),
) -> None:
    """Fine-tune an encoder on pairs (or on labelled texts with --task classification); writes a sentence-transformers folder."""
    from ragtune.config import build_config, parse_sets
    from ragtune.corpus.reader import load_chunks
    from ragtune.pairs import load_pairs
    from ragtune.train import AdapterSettings, TrainConfig, train

    named = _training_options(learning_rate, warmup_ratio, weight_decay, gradient_accumulation, mixed_precision,
                              lora_r, lora_alpha, lora_dropout, lora_plus_ratio, lora_lr, peft_method)
    if _task(task, data) == "classification":
        _train_classification(data, out, base, epochs, None if loss == _Defaults.loss else loss, batch_size, max_steps, named)
        return
    if pairs is None or data is not None:
        raise RagtuneError("train: give PAIRS (pairs.jsonl or a LlamaIndex dataset JSON), or --task classification --data D")
    cfg = build_config(TrainConfig, dict(
        parse_sets(f"{k}={json.dumps(v)}" for k, v in named.items()),
        base=base,
        epochs=epochs,
        loss=loss,
        batch_size=batch_size,
        max_steps=max_steps,
        max_seq_length=max_seq_length,
        matryoshka=not no_matryoshka,
        matryoshka_dims=_parse_dims(dims),
        query_adapter=AdapterSettings() if query_adapter else None,
        freeze_layers=freeze_layers,
        interpolate=interpolate,
        early_stopping_patience=early_stop,
        batching=batching,
        rotate=rotate,
        summarize=summarize,
    ))
    data = load_pairs(pairs)
    texts = [c.text for c in load_chunks(chunks)] if chunks else None
    with _showing_progress():
        result = train(data, out, cfg, chunks=texts)
    if not console.is_main_process():
        return  # data-parallel: rank 0 reports (and alone wrote the model)
    _echo(
        f"trained {result.steps} steps on {result.train_pairs} pairs in {result.seconds:.1f} s "
        f"({result.precision}, seq {result.max_seq_length}, dims {result.dims}"
        + (f", mixed {result.interpolation['alpha']} tuned / base" if result.interpolation else "")
        + f") → {out}"
    )
    if result.summary and result.summary.get("chunks"):
        s = result.summary
        _echo(
            f"chunk summaries: {s['chunks']} long chunks, distance to whole-chunk targets "
            f"{s['distance_before']} → {s['distance_after']} in {s['seconds']} s"
        )


@app.command()
def evaluate(
    model: str = typer.Option(..., "--model", "-m", help="Model folder (or hub id) to evaluate."),
    data: Path = typer.Option(..., "--data", "-d", help="LlamaIndex dataset JSON, BEIR folder, or pairs.jsonl; " + _LABELLED_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder to write."),
    baseline: str | None = typer.Option(None, "--base", help="Model to compare with (default: the model's base; 'none' to skip)."),
    hosted: str | None = typer.Option(None, "--baseline", help=_HOSTED_HELP + " A folder or hub id here means --base, as before."),
    cache: Path | None = typer.Option(None, "--cache", help="--baseline's embedding cache folder (default: OUT.embedding-cache beside --out)."),
    task: str = typer.Option("retrieval", "--task", help=_TASK_HELP),
    dims: str | None = typer.Option(None, "--dims", help="Dimensions to evaluate, comma-separated (default: the trained Matryoshka dims)."),
    long_chunks: bool = typer.Option(True, "--long/--no-long", help="Also evaluate best-window search."),
    llm: str | None = typer.Option(None, "--llm", help="provider:model to judge RAG quality with ragas (faithfulness, answer relevancy)."),
    backend: str = typer.Option("torch", "--backend", help=_BACKEND_HELP),
    backend_file: Path | None = typer.Option(None, "--backend-file", help=_BACKEND_FILE_HELP),
    workers: int = typer.Option(0, "--workers", help=_WORKERS_HELP),
) -> None:
    """Evaluate a model (and a baseline) on a labelled set; writes report.json/.md/.html."""
    from ragtune.encoders.encoder import Encoder, encoding_devices
    from ragtune.encoders.loading import load_model, model_label
    from ragtune.evaluation import evaluate_models, load_eval_dataset
    from ragtune.report import build_report, write_report

    baseline, hosted = _split_baseline(baseline, hosted)
    if _task(task, data) == "classification":
        if hosted:
            raise RagtuneError(f"--baseline {hosted!r}: a hosted baseline is scored on retrieval only")
        _evaluate_classification(data, model, baseline, out, backend, backend_file, workers)
        return
    from ragtune.encoders.hosted import hosted_baselines
    from ragtune.train.card import read_card

    dataset = load_eval_dataset(data)

    card = read_card(model)
    base = baseline if baseline is not None else card.get("base_model", "default")
    dim_list = _parse_dims(dims) or (card.get("result", {}).get("dims") or None)
    tuned = load_model(model, backend=backend, file=backend_file)
    labels: dict[str, Any] = {"tuned": tuned}
    if base and base.lower() != "none":
        labels = {"base": base, "tuned": tuned}
    devices = encoding_devices(workers)
    encoders = (
        {k: Encoder(load_model(m) if isinstance(m, str) else m, devices=devices) for k, m in labels.items()}
        if devices
        else labels
    )
    cache_dir = cache or out.with_name(out.name + ".embedding-cache")
    with _showing_progress(), hosted_baselines(hosted, cache_dir) as extra_models:
        results = evaluate_models(dataset, {**encoders, **extra_models}, dim_list, long_chunks, plain_only=extra_models)
        usage = {k: h.usage() for k, h in extra_models.items()}
        specs = {k: h.spec.spec for k, h in extra_models.items()}
    from ragtune.pipeline.stages import rag_metrics

    models = {label: (model_label(m) if label == "base" else _described(model, backend, backend_file)) for label, m in labels.items()}
    models.update(specs)
    rag = rag_metrics(dataset, results, llm)
    extra = {"hosted": usage} if usage else {}
    report = build_report(dataset, results, models, extra={**extra, **({"ragas": rag} if rag else {})} or None)
    write_report(report, out)
    _print_summary(report, None)
    _echo(f"wrote {out}/report.json, report.md, report.html")


@app.command()
def index(
    corpus: Path = typer.Argument(..., help="A document or a folder of documents."),
    model: str = typer.Option(..., "--model", "-m"),
    qdrant: str = typer.Option(..., "--qdrant", help="Qdrant folder (embedded), ':memory:' or http(s) URL."),
    collection: str = typer.Option(..., "--collection", "-c"),
    api_key: str | None = typer.Option(None, "--api-key", envvar="QDRANT_API_KEY"),
    chunk_size: int = typer.Option(1024, "--chunk-size"),
    small_dim: int | None = typer.Option(None, "--small-dim", help="Truncated vectors for two-stage search (default width/6; 0: none)."),
    quantization: str = typer.Option("none", "--quantization", help="none | scalar | binary (a Qdrant server honours it)."),
    backend: str = typer.Option("torch", "--backend", help=_BACKEND_HELP),
    backend_file: Path | None = typer.Option(None, "--backend-file", help=_BACKEND_FILE_HELP),
    workers: int = typer.Option(0, "--workers", help=_WORKERS_HELP),
    replace: bool = typer.Option(
        False, "--replace", help="A collection built by another model is rebuilt with this one (embedded: beside it, swapped in when complete)."
    ),
) -> None:
    """Chunk a corpus into a Qdrant collection that follows it: a re-run encodes only new or
    edited documents' chunks and removes those of edited and deleted ones (ids are content-addressed)."""
    from ragtune.corpus.reader import ChunkConfig, CorpusReader
    from ragtune.encoders.encoder import Encoder, encoding_devices
    from ragtune.encoders.loading import load_model
    from ragtune.index.chunk_index import open_index

    reader = CorpusReader(corpus, ChunkConfig(chunk_size=chunk_size))
    st = load_model(model, backend=backend, file=backend_file)
    enc = Encoder(st, devices=encoding_devices(workers))
    with open_index(qdrant, collection, st, model, api_key=api_key, small_dim=small_dim, quantization=quantization,
                    replace=replace) as idx:
        with _showing_progress():
            done = idx.sync(reader, enc)  # streamed: one file's chunks in memory at a time
        idx.commit()
        if idx.replaced:
            _echo(f"replaced {collection!r} of model {idx.replaced.get('model')!r} (weights {idx.replaced.get('fingerprint')})")
        _echo(
            f"{done['encoded']} chunks encoded, {done['kept']} kept, {done['removed']} removed; "
            f"{collection!r} at {qdrant} holds {done['points']} points"
        )


@app.command()
def query(
    text: str = typer.Argument(..., help="The question or search text."),
    model: str = typer.Option(..., "--model", "-m"),
    qdrant: str = typer.Option(..., "--qdrant"),
    collection: str = typer.Option(..., "--collection", "-c"),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Hits to return (>= 1)."),
    mode: str = typer.Option(
        "hybrid", "--mode",
        help="hybrid (best window fused with BM25 at the model's fitted weight) | dense (best window) | sparse (BM25) | plain",
    ),
    api_key: str | None = typer.Option(None, "--api-key", envvar="QDRANT_API_KEY"),
    two_stage: bool = typer.Option(False, "--two-stage", help="Candidates on small Matryoshka vectors, rescored on full ones."),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON lines."),
    backend: str = typer.Option("torch", "--backend", help=_BACKEND_HELP),
    backend_file: Path | None = typer.Option(None, "--backend-file", help=_BACKEND_FILE_HELP),
) -> None:
    """Search a ragtune Qdrant collection with a model."""
    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.loading import load_model, resolve_model
    from ragtune.index.chunk_index import check_location, open_index
    from ragtune.index.fusion import read_hybrid

    resolve_model(model)  # a bad model or folder fails in a second, before anything loads
    check_location(qdrant)
    st = load_model(model, backend=backend, file=backend_file)
    enc = Encoder(st)
    with open_index(qdrant, collection, st, model, api_key=api_key, create=False) as idx:
        vector = None if mode == "sparse" else enc.encode_queries([text])[0]
        hits = idx.search(vector, top_k=top_k, mode=mode, two_stage=two_stage, query_text=text,
                          hybrid=read_hybrid(resolve_model(model)))
    for rank, h in enumerate(hits, 1):
        if as_json:
            _echo(json.dumps({"rank": rank, "id": h.id, "score": h.score, "source": h.metadata.get("source"), "text": h.text}))
        else:
            snippet = " ".join(h.text.split())[:300]
            _echo(f"{rank}. [{h.score:.3f}] {h.metadata.get('source', '')}\n   {snippet}")


# Commands that other packages contribute (``ragtune serve`` comes from ragtune_server):
# an entry point in the ``ragtune.commands`` group names ``register(app)``, which
# adds its command to this app. The core never imports those packages itself.
COMMAND_GROUP = "ragtune.commands"
# command → the extra that provides it, for the error when it is not installed
_EXTRA_COMMANDS = {"serve": "server"}


def _stand_in(target: typer.Typer, name: str, extra: str, reason: str) -> None:
    """Register ``name`` as a command that only explains how to get the real one."""

    @target.command(
        name,
        help=f"Not installed: needs the {extra} extra.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def _missing() -> None:
        raise RagtuneError(f'ragtune {name} needs the {extra} extra: pip install "ragtune[{extra}]"{reason}')


def load_commands(target: typer.Typer, entry_points: Iterable[Any] | None = None) -> None:
    """Add the commands of installed packages (entry point group ``ragtune.commands``) to ``target``.

    A command whose package cannot be imported, or that no installed package
    provides, becomes a stand-in that ends in a one-line ``error:`` naming the extra.
    """
    if entry_points is None:
        from importlib.metadata import entry_points as _entry_points

        entry_points = _entry_points(group=COMMAND_GROUP)
    failed: dict[str, str] = {}
    for ep in entry_points:
        try:
            register = ep.load()
        except ImportError as exc:
            failed[ep.name] = f" ({exc})"
            continue
        register(target)
    have = {c.name for c in target.registered_commands}
    for name, extra in _EXTRA_COMMANDS.items():
        if name not in have:
            _stand_in(target, name, extra, failed.get(name, ""))


@app.command("export")
def export_cmd(
    model: Path = typer.Argument(..., help="A model folder (what ragtune train or run wrote)."),
    formats: str = typer.Option(..., "--format", "-f", help=f"Comma-separated: {', '.join(FORMATS)}."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder to write (default: inside MODEL, where sentence-transformers looks)."),
    calibration: Path | None = typer.Option(
        None, "--calibration",
        help="Texts for openvino-int8: chunks.jsonl, pairs.jsonl or a corpus folder (default: the run's chunks.jsonl beside MODEL).",
    ),
    pairs: Path | None = typer.Option(
        None, "--pairs", help="Training pairs for the static student (default: the run's pairs.jsonl beside MODEL)."
    ),
) -> None:
    """Write the model as ONNX / OpenVINO (fp32 or int8), or distil a static student, for faster CPU inference."""
    from ragtune.encoders.export import export_model
    from ragtune.encoders.runtime import static_folder

    wanted = _formats(formats)
    texts = _calibration_texts(calibration, model) if "openvino-int8" in wanted else None
    with _showing_progress():
        for fmt in progress.track(wanted, "Exporting", unit="forms"):
            if fmt == "static":
                from ragtune.pairs import load_pairs
                from ragtune.train.static import distill_static

                path = distill_static(model, load_pairs(_beside(pairs, model, "pairs.jsonl")), out or static_folder(model))
                _echo(f"static: {path} (a sentence-transformers folder: --model {path})")
                continue
            path = export_model(model, fmt, out, calibration=texts)
            _echo(f"{fmt}: {path} ({path.stat().st_size / 2**20:.1f} MB)")


def _task(task: str, data: Path | None) -> str:
    """The --task, checked against what was given: one-line errors before anything loads."""
    from ragtune.evaluation.classification import TASKS

    if task not in TASKS:
        raise RagtuneError(f"--task {task!r}: choose {' or '.join(TASKS)}")
    if task == "classification" and data is None:
        raise RagtuneError("--task classification needs --data (labelled texts: JSONL/CSV with text,label, or a folder of label subfolders)")
    return task


def _train_classification(
    data: Path, out: Path, base: str | None, epochs: float, loss: str | None, batch_size: int, max_steps: int,
    named: dict[str, Any],
) -> None:
    """``train --task classification``: tune on the train part of the labelled set's fixed split."""
    from ragtune.evaluation.classification import load_labelled
    from ragtune.train.classification import (
        DEFAULT_LEARNING_RATE,
        DEFAULT_LOSS,
        train_classification,
    )

    if any(k.startswith("lora.") or k == "gradient_accumulation" for k in named):
        raise RagtuneError("--task classification trains all weights: drop the --lora-* / --gradient-accumulation options")
    train_part, _ = load_labelled(data).split()
    with _showing_progress():
        r = train_classification(
            train_part.texts, train_part.labels, out, base=base, loss=loss or DEFAULT_LOSS, epochs=epochs,
            batch_size=batch_size, learning_rate=named.get("learning_rate", DEFAULT_LEARNING_RATE),
            warmup_ratio=named.get("warmup_ratio", 0.1), weight_decay=named.get("weight_decay", 0.01),
            max_steps=max_steps, precision=named.get("precision", "auto"),
        )
    _echo(f"trained {r.steps} steps on {r.texts} labelled texts ({len(r.labels)} labels, {r.loss}, {r.precision}) "
          f"in {r.seconds:.1f} s → {out}")


def _evaluate_classification(
    data: Path, model: str, baseline: str | None, out: Path, backend: str, backend_file: Path | None, workers: int
) -> None:
    """``evaluate --task classification``: probe base and tuned embeddings on the labelled set's held-out part."""
    from ragtune.encoders.encoder import Encoder, encoding_devices
    from ragtune.encoders.loading import load_model, model_label, resolve_model
    from ragtune.evaluation.classification import evaluate_classification, load_labelled
    from ragtune.report import write_report
    from ragtune.report.classification import build_classification_report
    from ragtune.train.card import read_card

    labelled = load_labelled(data)
    base = baseline if baseline is not None else read_card(model).get("base_model", "default")
    base = None if base.lower() == "none" else base
    if base is not None:
        resolve_model(base)
    devices = encoding_devices(workers)
    models: dict[str, Any] = {"base": base} if base is not None else {}
    models["tuned"] = load_model(model, backend=backend, file=backend_file)
    encoders = {k: Encoder(m, devices=devices) for k, m in models.items()}
    with _showing_progress():
        result = evaluate_classification(labelled, encoders)
    names = {k: model_label(base) if k == "base" else _described(model, backend, backend_file) for k in models}
    report = build_classification_report(labelled, result, names)
    write_report(report, out)
    from ragtune.report.markdown import verdict

    _echo("")
    _echo(verdict(report))
    for label, m in result["metrics"].items():
        _echo(f"  {label:<6} accuracy {m['accuracy']:.3f} [{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}]  "
              f"macro-F1 {m['macro_f1']:.3f} [{m['macro_f1_ci'][0]:.3f}, {m['macro_f1_ci'][1]:.3f}]")
    _echo(f"wrote {out}/report.json, report.md, report.html")


def _split_baseline(base: str | None, baseline: str | None) -> tuple[str | None, str | None]:
    """(--base, hosted --baseline), the hosted spec checked; a --baseline naming a folder or hub id still means --base."""
    from ragtune.encoders.hosted import is_hosted_spec, parse_baseline

    if baseline is not None and not is_hosted_spec(baseline):
        if base is not None:
            raise RagtuneError(f"--baseline {baseline!r}: not a hosted model (http(s) URL or provider:model); give a local one as --base")
        return baseline, None
    if baseline is not None:
        parse_baseline(baseline)
    return base, baseline


def _formats(value: str) -> list[str]:
    wanted = [f.strip() for f in value.split(",") if f.strip()]
    bad = [f for f in wanted if f not in FORMATS]
    if bad or not wanted:
        raise RagtuneError(f"--format {value!r}: choose from {', '.join(FORMATS)}")
    return wanted


def _calibration_texts(path: Path | None, model: Path) -> list[str]:
    """The texts int8 calibration sees: chunks or pairs of a run, or a corpus folder read as chunks."""
    from ragtune.corpus.reader import load_chunks, load_corpus
    from ragtune.pairs import load_pairs

    path = _beside(path, model, "chunks.jsonl")
    if path.is_dir():
        return [c.text for c in load_corpus(path).chunks]
    if path.name.endswith("pairs.jsonl"):
        return [p.positive for p in load_pairs(path)]
    return [c.text for c in load_chunks(path)]


def _beside(path: Path | None, model: Path, name: str) -> Path:
    """``path``, or the run's ``name`` beside the model folder; a missing one is a one-line error."""
    path = path or Path(model).parent / name
    if not path.exists():
        raise RagtuneError(f"{path}: no such file; pass the run's {name} (or another) explicitly")
    return path


def _described(model: str, backend: str, file: Path | None) -> str:
    return model if backend == "torch" else f"{model} ({backend}{': ' + str(file) if file else ''})"


def _parse_dims(dims: str | None) -> tuple[int, ...] | None:
    if not dims:
        return None
    try:
        return tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise RagtuneError(f"--dims {dims!r}: give comma-separated integers, e.g. 384,128,64") from None


def _print_summary(report: dict[str, Any], workdir: Path | None) -> None:
    from ragtune.report.markdown import verdict

    _echo("")
    _echo(verdict(report))
    for label, by_dim in (report.get("metrics") or {}).items():
        for dim in sorted(by_dim, key=int, reverse=True):
            m = by_dim[dim]
            cells = "  ".join(f"{k} {m[k]:.3f}" for k in ("hit@5", "mrr@10", "ndcg@10") if k in m)
            _echo(f"  {label:<11} dim {dim:>4}  {cells}")
    if workdir is not None:
        _echo(f"report: {Path(workdir) / 'report' / 'report.html'}")


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    try:
        # click's own handling would print a usage box; every error here is one line
        code = app(standalone_mode=False)
    except RagtuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except typer.TyperException as exc:  # (typer's click) a bad option value, a missing argument
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {message} (see ragtune {_command_name()} --help)".replace("  ", " "), err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        typer.echo("interrupted: re-run the same command to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted: re-run the same command to resume", err=True)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


def _command_name() -> str:
    """The sub-command being run, for the pointer to its help."""
    return next((a for a in sys.argv[1:] if not a.startswith("-")), "")


load_commands(app)

if __name__ == "__main__":
    main()
