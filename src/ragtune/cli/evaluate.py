"""``ragtune evaluate``: a model (and a baseline) on a labelled set; writes report.json/.md/.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ragtune.cli import options as o
from ragtune.cli.output import echo, print_summary, showing_progress
from ragtune.errors import RagtuneError


def evaluate(
    model: o.Model,
    data: Path = typer.Option(..., "--data", "-d", help="LlamaIndex dataset JSON, BEIR folder, or pairs.jsonl; " + o.LABELLED_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder to write."),
    baseline: str | None = typer.Option(None, "--base", help="Model to compare with (default: the model's base; 'none' to skip)."),
    hosted: str | None = typer.Option(None, "--baseline", help=o.HOSTED_HELP + " A folder or hub id here means --base."),
    cache: Path | None = typer.Option(None, "--cache", help="--baseline's embedding cache folder (default: OUT.embedding-cache beside --out)."),
    task: o.Task = o.RETRIEVAL,
    dims: str | None = typer.Option(None, "--dims", help="Dimensions to evaluate, comma-separated (default: the trained Matryoshka dims)."),
    long_chunks: bool = typer.Option(True, "--long/--no-long", help="Also evaluate best-window search."),
    llm: str | None = typer.Option(None, "--llm", help="provider:model to judge RAG quality with ragas (faithfulness, answer relevancy)."),
    judge_queries: o.JudgeQueries = None,
    backend: o.Backend = o.DEFAULT_BACKEND,
    backend_file: o.BackendFile = None,
    workers: o.Workers = 0,
) -> None:
    """Evaluate a model (and a baseline) on a labelled set; writes report.json/.md/.html."""
    from ragtune.encoders.encoder import Encoder, encoding_devices
    from ragtune.encoders.loading import load_model, model_label
    from ragtune.evaluation import evaluate_models, load_eval_dataset
    from ragtune.report import build_report, write_report

    baseline, hosted = _split_baseline(baseline, hosted)
    if o.task(task, data) == "classification":
        if hosted:
            raise RagtuneError(f"--baseline {hosted!r}: a hosted baseline is scored on retrieval only")
        _evaluate_classification(data, model, baseline, out, backend, backend_file, workers)
        return
    from ragtune.encoders.hosted import hosted_baselines
    from ragtune.index.fusion import read_hybrid
    from ragtune.train.card import read_card

    dataset = load_eval_dataset(data)

    card = read_card(model)
    base = baseline if baseline is not None else card.get("base_model", "default")
    dim_list = o.dims(dims) or (card.get("result", {}).get("dims") or None)
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
    with showing_progress(), hosted_baselines(hosted, cache_dir) as extra_models:
        # the tuned model's hybrid fusion as `ragtune run` fitted it (its folder); the base model's default
        results = evaluate_models(dataset, {**encoders, **extra_models}, dim_list, long_chunks, plain_only=extra_models,
                                  hybrid={"tuned": read_hybrid(model)})
        usage = {k: h.usage() for k, h in extra_models.items()}
        specs = {k: h.spec.spec for k, h in extra_models.items()}
    from ragtune.evaluation.ragas_eval import DEFAULT_MAX_QUERIES
    from ragtune.pipeline.stages import rag_metrics

    models = {label: (model_label(m) if label == "base" else o.described(model, backend, backend_file)) for label, m in labels.items()}
    models.update(specs)
    coverage: dict[str, Any] = {}
    rag = rag_metrics(dataset, results, llm, coverage, max_queries=DEFAULT_MAX_QUERIES if judge_queries is None else judge_queries)
    extra = {"hosted": usage} if usage else {}
    if rag:
        extra.update(ragas=rag, ragas_scored=coverage)
    report = build_report(dataset, results, models, extra=extra or None)
    write_report(report, out)
    print_summary(report, None)
    echo(f"wrote {out}/report.json, report.md, report.html")


def _evaluate_classification(
    data: Path, model: str, baseline: str | None, out: Path, backend: str, backend_file: Path | None, workers: int
) -> None:
    """``evaluate --task classification``: probe base and tuned embeddings on the labelled set's held-out part."""
    from ragtune.encoders.encoder import Encoder, encoding_devices
    from ragtune.encoders.loading import load_model, model_label, resolve_model
    from ragtune.evaluation.classification import evaluate_classification, load_labelled
    from ragtune.report import write_report
    from ragtune.report.classification import build_classification_report
    from ragtune.report.markdown import verdict
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
    with showing_progress():
        result = evaluate_classification(labelled, encoders)
    names = {k: model_label(base) if k == "base" else o.described(model, backend, backend_file) for k in models}
    report = build_classification_report(labelled, result, names)
    write_report(report, out)
    echo("")
    echo(verdict(report))
    for label, m in result["metrics"].items():
        echo(f"  {label:<6} accuracy {m['accuracy']:.3f} [{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}]  "
             f"macro-F1 {m['macro_f1']:.3f} [{m['macro_f1_ci'][0]:.3f}, {m['macro_f1_ci'][1]:.3f}]")
    echo(f"wrote {out}/report.json, report.md, report.html")


def _split_baseline(base: str | None, baseline: str | None) -> tuple[str | None, str | None]:
    """(--base, hosted --baseline), the hosted spec checked; a --baseline naming a folder or hub id means --base."""
    from ragtune.encoders.hosted import is_hosted_spec, parse_baseline

    if baseline is not None and not is_hosted_spec(baseline):
        if base is not None:
            raise RagtuneError(f"--baseline {baseline!r}: not a hosted model (http(s) URL or provider:model); give a local one as --base")
        return baseline, None
    if baseline is not None:
        parse_baseline(baseline)
    return base, baseline
