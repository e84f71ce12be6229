"""The whole job — corpus to tuned model, vector index (Qdrant or Milvus) and report — as resumable stages.

Each ``stage_*`` function takes typed inputs, writes one artifact into the run
directory and records itself in ``run.json``; a stage whose inputs and config
are unchanged and whose artifact exists is skipped, so re-running an
interrupted ``ragtune run`` picks up where it stopped. The CLI only calls these.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune._io import sha256_file
from ragtune.config import build_config, to_data
from ragtune.corpus.reader import Chunk, ChunkConfig, load_chunks, load_corpus, save_chunks
from ragtune.encoders.encoder import Encoder, encoding_devices
from ragtune.encoders.loading import load_model, model_label, resolve_model
from ragtune.errors import ConfigError, InputError, RagtuneError
from ragtune.evaluation import RetrievalDataset, evaluate_models, from_pairs, load_eval_dataset
from ragtune.evaluation.ragas_eval import DEFAULT_MAX_QUERIES
from ragtune.index.fusion import HybridConfig, read_hybrid
from ragtune.pairs import (
    GenerationConfig,
    Pair,
    generate_pairs,
    load_pairs,
    make_generator,
    save_pairs,
)
from ragtune.pipeline.rundir import RunDir, fingerprint
from ragtune.progress import task, track
from ragtune.report import build_report, write_report
from ragtune.train import TrainConfig, train

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """Everything ``ragtune run`` needs; one sub-config per stage."""

    corpus: str
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_data: str | None = None
    collection: str = "ragtune"
    qdrant: str | None = None  # where the collection lives (--store; any store open_index takes); default: RUN/qdrant (Qdrant, embedded)
    long_chunks: bool = True  # also evaluate best-window (long-chunk) search
    # last stage: the tuned model also as these forms (ragtune.encoders.runtime.FORMATS)
    export: list[str] = field(default_factory=list)
    # a hosted embedding model scored beside base and tuned (ragtune.encoders.hosted: URL[#MODEL] or provider:model)
    baseline: str | None = None
    # served-query logs (ragtune serve --log-queries DIR): pseudo-labelled, then the tuned model trains further on them
    queries: str | None = None
    # with an LLM: the sampled questions it answers and judges per retriever (ragas); each costs ~10 LLM calls
    judge_queries: int = DEFAULT_MAX_QUERIES

    def __post_init__(self) -> None:
        from ragtune.encoders.runtime import backend_of
        from ragtune.index.chunk_index import check_collection

        for fmt in self.export:
            backend_of(fmt)  # ConfigError naming the choices
        if not isinstance(self.judge_queries, int) or self.judge_queries < 1:
            raise ConfigError(f"judge_queries={self.judge_queries!r}: give a positive number of questions to judge")
        if self.queries:  # an adapter run cannot be trained further on them: say so before hours of training
            from ragtune.train.served import check_continuable

            check_continuable(self.train)
        check_collection(self.collection)

    def to_dict(self) -> dict[str, Any]:
        return to_data(self)


def resolve_run_config(data: dict[str, Any]) -> RunConfig:
    """A :class:`RunConfig` from merged plain data (config file, CLI options, ``--set``); errors name the field.

    Example:
        >>> resolve_run_config({"corpus": "docs", "train": {"lora": {"rank": 16}, "epochs": 1}}).train.lora.rank
        16
    """
    return build_config(RunConfig, data)


def stage_chunks(rd: RunDir, corpus: str | Path, config: ChunkConfig) -> list[Chunk]:
    """Corpus → ``chunks.jsonl``."""
    fp = fingerprint("chunks", str(Path(corpus).resolve()), asdict(config), _tree_hash(corpus))
    if rd.stage_done("chunks", fp, rd.chunks):
        return load_chunks(rd.chunks)
    with rd.stage("chunks", fp, rd.chunks) as info, task("[1/5] chunks"):
        res = load_corpus(corpus, config)
        save_chunks(rd.chunks, res.chunks)
        info.update(files=len(res.files), documents=res.documents, chunks=len(res.chunks), skipped=res.skipped)
        rd.record.setdefault("inputs", {})["corpus_files"] = res.files
    return res.chunks


def stage_pairs(
    rd: RunDir, chunks: Sequence[Chunk], base: str | None, config: GenerationConfig
) -> list[Pair]:
    """``chunks.jsonl`` → ``pairs.jsonl`` (offline generator, filters, split)."""
    fp = fingerprint("pairs", sha256_file(rd.chunks), asdict(config), model_label(base))
    if rd.stage_done("pairs", fp, rd.pairs):
        return load_pairs(rd.pairs)
    with rd.stage("pairs", fp, rd.pairs) as info, task("[2/5] pairs"):
        encoder = Encoder(base)
        generator = make_generator(config, cache_dir=rd.cache / "llm")
        res = generate_pairs(
            chunks, encoder.tokenizer, encoder.window_spec(), config, generator=generator, encoder=encoder,
        )
        save_pairs(rd.pairs, res.pairs)
        info.update(
            chunks=len(chunks),
            windows=res.windows,
            generated=res.generated,
            kept=len(res.pairs),
            dropped=res.dropped,
            by_kind=res.by_kind,
            generator=res.generator_stats,
            negatives=res.mining,
            train=sum(p.split != "val" for p in res.pairs),
            val=sum(p.split == "val" for p in res.pairs),
        )
    return res.pairs


def stage_served(rd: RunDir, chunks: Sequence[Chunk], model_dir: Path, queries: str | Path) -> list[Pair]:
    """Served-query logs → ``served_pairs.jsonl``: pseudo-labelled pairs (:mod:`ragtune.pairs.served`),
    judged by the model trained on the synthetic pairs (the one that was served) fused with BM25 at its
    fitted weight. Only this stage and what follows it redo when the logs grow."""
    from ragtune.index.fusion import read_hybrid
    from ragtune.pairs.querylog import read_query_log
    from ragtune.pairs.served import ServedConfig, label_served_queries

    folder = Path(queries)
    log = read_query_log(folder)  # a missing or empty folder is one line, before any work
    logs = sorted(p for p in folder.iterdir() if p.name.startswith("queries.jsonl"))
    cfg = ServedConfig(alpha=read_hybrid(model_dir).alpha)
    judge = rd.record["stages"]["train"].get("artifact")  # the digest of the judge's weights, as trained
    fp = fingerprint("served", sha256_file(rd.chunks), [sha256_file(p) for p in logs], judge, asdict(cfg))
    if rd.stage_done("served", fp, rd.served_pairs):
        return load_pairs(rd.served_pairs)
    with rd.stage("served", fp, rd.served_pairs) as info, task("[3+] served queries"):
        encoder = Encoder(model_dir)
        result = label_served_queries(log, chunks, encoder, encoder.window_spec(), cfg)
        save_pairs(rd.served_pairs, result.pairs)
        info.update(result.record(), judge="tuned+hybrid", log_files=log.files, unreadable_lines=log.skipped_lines)
    return result.pairs


def stage_train(rd: RunDir, pairs: Sequence[Pair], config: TrainConfig, chunks: Sequence[Chunk] = ()) -> Path:
    """``pairs.jsonl`` (+ ``chunks.jsonl``, the corpus to be indexed) → ``model/`` (resumes from ``checkpoints/``)."""
    fp = fingerprint("train", sha256_file(rd.pairs), sha256_file(rd.chunks) if chunks else "", config.to_dict())
    if rd.stage_done("train", fp, rd.model):
        return rd.model
    with rd.stage("train", fp, rd.model) as info, task("[3/5] training"):
        result = train(pairs, rd.model, config, checkpoint_dir=rd.checkpoints, chunks=[c.text for c in chunks] or None)
        info.update(result.to_dict())
        info["train_loop_s"] = info.pop("seconds")
        # inside the stage: the fitted fusion is part of the model folder the stage records
        info["hybrid"] = fit_fusions(rd.model, config.base, pairs, chunks)
    return rd.model


def stage_served_train(
    rd: RunDir, model_dir: Path, served: Sequence[Pair], config: TrainConfig, pairs: Sequence[Pair], chunks: Sequence[Chunk]
) -> Path:
    """``model/`` + ``served_pairs.jsonl`` → ``model-served/``: the tuned model trained further on the
    served questions (:mod:`ragtune.train.served`); the model the later stages index, evaluate and export."""
    from ragtune.train.served import train_on_served

    if len(served) < 2:  # too few labelled questions to train on: the run goes on with the synthetic-tuned model
        log.warning("served queries: %d labelled question(s), too few to train on; using %s as it is",
                    len(served), rd.relative(model_dir))
        rd.record["stages"].pop("served_train", None)
        return model_dir
    fp = fingerprint("served_train", rd.record["stages"]["train"].get("artifact"), sha256_file(rd.served_pairs),
                     config.to_dict())
    if rd.stage_done("served_train", fp, rd.served_model):
        return rd.served_model
    with rd.stage("served_train", fp, rd.served_model) as info, task("[3++] training on served queries"):
        result = train_on_served(model_dir, served, rd.served_model, config, checkpoint_dir=rd.served_checkpoints)
        info.update(result.to_dict())
        info["train_loop_s"] = info.pop("seconds")
        info["pairs_by_source"] = {"synthetic": sum(p.split != "val" for p in pairs), "served": len(served)}
        info["hybrid"] = fit_fusions(rd.served_model, config.base, pairs, chunks, with_base=False)
    return rd.served_model


def fit_fusions(
    model_dir: Path, base: str | None, pairs: Sequence[Pair], chunks: Sequence[Chunk], with_base: bool = True
) -> dict[str, Any]:
    """Fit hybrid search's weight for the tuned model (written beside it) and, ``with_base``, for the base model.

    Both on the held-out pairs over every chunk; the base model's weight is what
    a user of the untuned model with BM25 would best have, so ``base+hybrid``
    in the report is that user's retriever at its best, not at a fixed weight.
    """
    from ragtune.evaluation.evaluator import bm25_matrix
    from ragtune.evaluation.hybrid import fit_hybrid
    from ragtune.index.fusion import HybridConfig, write_hybrid

    if not chunks or not any(p.split == "val" for p in pairs):
        fitted = {"tuned": HybridConfig(), **({"base": HybridConfig()} if with_base else {})}
    else:
        held_out = from_pairs(pairs, chunks, split="val", name="held-out generated pairs")
        bm25, _ = bm25_matrix(held_out)  # one BM25 scoring serves both fits
        fitted = {"tuned": fit_hybrid(model_dir, held_out, bm25=bm25)}
        if with_base:
            fitted["base"] = fit_hybrid(resolve_model(base), held_out, bm25=bm25)
    write_hybrid(model_dir, fitted["tuned"])
    return {k: v.to_json() for k, v in fitted.items()}


def stage_index(
    rd: RunDir,
    chunks: Sequence[Chunk],
    model_dir: str | Path,
    collection: str,
    location: str | None = None,
    encoder: Encoder | None = None,
) -> dict[str, Any]:
    """Chunks + model → a collection in the store at ``location`` (``RUN/qdrant``, Qdrant embedded, by default).

    ``encoder`` (of ``model_dir``'s model) is used instead of loading the model
    again; the pipeline passes the one it then evaluates with.
    """
    from ragtune.encoders.loading import model_fingerprint
    from ragtune.index.chunk_index import location_path, open_index

    loc = location or str(rd.qdrant)
    model = encoder.model if encoder is not None else load_model(model_dir)
    mfp = model_fingerprint(model)
    # the run's own store is named relative to the run, so a copied run directory is still done
    fp = fingerprint("index", sha256_file(rd.chunks), mfp, collection, location or "RUN/qdrant")
    where = location_path(loc)  # an embedded store's folder or file; None for a server
    if rd.stage_done("index", fp, where or rd.root) and _index_intact(rd, loc, collection, model):
        return rd.record["stages"]["index"]
    with rd.stage("index", fp) as info, task("[4/5] index"):
        encoder = encoder or Encoder(model, devices=encoding_devices())  # every GPU when there are several
        # a collection of another model (a re-run that retrained) is rebuilt beside it and swapped in
        with open_index(loc, collection, model, str(model_dir), replace=True) as index:
            done = index.sync(list(chunks), encoder)
            index.commit()
            if index.replaced:
                log.info("%s: collection %r rebuilt for the new model (weights %s, was %s) and swapped in",
                         rd.relative(where) if where else loc, collection, mfp,
                         index.replaced.get("fingerprint"))
            info.update(location=loc, collection=collection, points=done["points"], encoded=done["encoded"],
                        removed=done["removed"], engine=index.engine, dim=encoder.dimension,
                        replaced=index.replaced)
    return info


def _index_intact(rd: RunDir, location: str, collection: str, model: Any) -> bool:
    """The recorded collection is still there, built by ``model``, with the points the stage wrote."""
    from ragtune.index.chunk_index import open_index

    want = rd.record["stages"]["index"].get("points")
    try:
        with open_index(location, collection, model, "", create=False) as index:
            have = index.count()
    except RagtuneError as exc:
        log.warning("%s: the index stage's collection cannot be used (%s); rebuilding it", location, exc)
        return False
    if want is not None and have != want:
        log.warning("%s: collection %r holds %d points, the index stage wrote %d; rebuilding it",
                    location, collection, have, want)
        return False
    return True


def stage_evaluate(
    rd: RunDir,
    dataset: RetrievalDataset,
    base: str | None,
    tuned: str | Path | None,
    dims: Sequence[int] | None = None,
    long_chunks: bool = True,
    extra: dict[str, Any] | None = None,
    judge_llm: str | None = None,
    encoders: dict[str, Encoder] | None = None,
    baseline: str | None = None,
    judge_queries: int = DEFAULT_MAX_QUERIES,
) -> dict[str, Any]:
    """Base (and tuned) model on ``dataset`` → ``report/`` (json, md, html).

    RAG metrics from ragas go into the report too: the ID-based ones always
    (when ragas is installed), the LLM-judged ones when ``judge_llm`` is a spec.
    ``encoders`` maps a label (``tuned``) to an already-loaded :class:`Encoder`
    of that model, used instead of loading it again. ``baseline`` (a
    :mod:`ragtune.encoders.hosted` spec) is scored too, in plain mode, its vectors cached
    in ``RUN/cache/embeddings``; its tokens and cost go into the report.
    ``judge_queries``: how many sampled questions the judge answers and scores per label.
    """
    models: dict[str, Any] = {"base": base} if tuned is None else {"base": base, "tuned": tuned}
    stages = rd.record.get("stages", {})
    # the tuned model trained further on served queries follows that stage too (more logs: a new model)
    served = tuned is not None and Path(tuned) == rd.served_model
    fp = fingerprint("evaluate", dataset.source, len(dataset.queries), model_label(base),
                     rd.relative(Path(tuned)) if tuned is not None else None, list(dims or []), long_chunks, judge_llm,
                     stages.get("train", {}).get("fingerprint"), *([baseline] if baseline else []),
                     # only a judged run's non-default sample size enters (earlier runs keep their fingerprint)
                     *([("judge_queries", judge_queries)] if judge_llm and judge_queries != DEFAULT_MAX_QUERIES else []),
                     *([("served_train", stages.get("served_train", {}).get("fingerprint"))] if served else []))
    if rd.stage_done("evaluate", fp, rd.report / "report.json"):
        import json

        return json.loads((rd.report / "report.json").read_text())
    from ragtune.encoders.hosted import hosted_baselines

    fusions = {label: HybridConfig(**cfg) for label, cfg in (stages.get("train", {}).get("hybrid") or {}).items()}
    if tuned is not None:  # the fit written beside the model evaluated (model-served/ has its own)
        fusions["tuned"] = read_hybrid(tuned)
    with hosted_baselines(baseline, rd.cache / "embeddings") as hosted, rd.stage("evaluate", fp) as info, task("[5/5] evaluation"):
        results = evaluate_models(dataset, {**models, **(encoders or {}), **hosted}, dims, long_chunks, plain_only=hosted,
                                  hybrid=fusions)
        info.update({label: r.seconds for label, r in results.items()})
        info["hybrid"] = {label: f.to_json() for label, f in fusions.items()}  # the weights its +hybrid rows used
        info.update({"hosted": {k: h.usage() for k, h in hosted.items()}} if hosted else {})
    names = {label: model_label(m) if label == "base" else str(m) for label, m in models.items()}
    names.update({k: h.spec.spec for k, h in hosted.items()})
    extra = dict(extra or {}, **({"hosted": info["hosted"]} if hosted else {}))
    coverage: dict[str, Any] = {}
    rag = rag_metrics(dataset, results, judge_llm, coverage, max_queries=judge_queries)
    if rag:
        extra["ragas"] = rag
        extra["ragas_scored"] = coverage
    report = build_report(dataset, results, names, timings=rd.timings(), extra=extra)
    write_report(report, rd.report)
    rd.record_artifact("evaluate", rd.report / "report.json")
    return report


def stage_export(
    rd: RunDir, chunks: Sequence[Chunk], model_dir: Path, formats: Sequence[str], dataset: RetrievalDataset | None = None
) -> dict[str, Any]:
    """``model/`` → ``model/onnx/…``, ``model/openvino/…`` (int8 calibrated on the run's chunks), ``model-static/``.

    With ``dataset``, each form is then measured beside torch (quality, docs/s,
    query latency, size) into ``info["speed"]``: the report's speed section.
    Every file it writes is recorded with its digest and verified like any other
    artifact, and the stage depends on the model's fingerprint: an export deleted
    or damaged since, or a model retrained (whose new folder has no exports), is
    redone, never reported done without its files.
    """
    from ragtune.encoders.export import export_model
    from ragtune.encoders.loading import model_fingerprint
    from ragtune.evaluation.speed import FIRST, measure_forms
    from ragtune.machine import machine_info
    from ragtune.train.static import distill_static

    measured = (dataset.source, len(dataset.queries)) if dataset is not None else None
    fp = fingerprint("export", model_fingerprint(load_model(model_dir)), sorted(formats), measured)
    if rd.stage_done("export", fp, rd.outputs("export")):
        return rd.record["stages"]["export"]
    written: list[Path] = []  # every file (folder, for static) the stage writes: digested when it ends
    with rd.stage("export", fp, written) as info, task("[+] export"):
        paths: dict[str, Path] = {}
        for fmt in track(formats, "Exporting", unit="forms"):
            if fmt == "static":
                paths[fmt] = distill_static(model_dir, load_pairs(rd.pairs), rd.root / "model-static")
                info[fmt] = {"folder": str(paths[fmt])}
                written.append(paths[fmt])
                continue
            paths[fmt] = export_model(model_dir, fmt, calibration=[c.text for c in chunks])
            info[fmt] = {"file": str(paths[fmt].relative_to(model_dir)), "mb": round(paths[fmt].stat().st_size / 2**20, 1)}
            written.append(paths[fmt])
            weights = paths[fmt].with_suffix(".bin")
            if paths[fmt].suffix == ".xml" and weights.exists():  # OpenVINO's weights lie beside its .xml
                written.append(weights)
        if dataset is not None:
            rows = measure_forms(model_dir, [FIRST, *formats], dataset, paths=paths)
            info["speed"] = {"dataset": dataset.name, "cpu": machine_info().get("cpu_model"), "forms": rows}
    return info


def rag_metrics(
    dataset: RetrievalDataset, results: dict[str, Any], judge_llm: str | None, coverage: dict[str, Any] | None = None,
    max_queries: int = DEFAULT_MAX_QUERIES,
) -> dict[str, Any]:
    """ragas metrics for the plain-mode labels; empty (and logged) when ragas is not installed.
    ``coverage`` is filled with how many samples each metric could score (see ``ragas_metrics``);
    ``max_queries`` caps the questions the judge answers and scores per label."""

    try:
        from ragtune.evaluation.ragas_eval import ragas_metrics
    except ImportError as exc:  # the module itself imports nothing heavy; stay defensive
        log.info("ragas metrics skipped: %s", exc)
        return {}
    llm = None
    if judge_llm:
        from ragtune.providers import llm_from_spec

        llm = llm_from_spec(judge_llm)
    chosen = {k: v for k, v in results.items() if not k.endswith("+long")}
    try:
        return ragas_metrics(dataset, chosen, llm=llm, coverage=coverage, max_queries=max_queries)
    except RagtuneError as exc:
        if llm is not None:
            raise
        log.info("ragas metrics skipped: %s", exc)
        return {}


def preflight(config: RunConfig, workdir: str | Path) -> RetrievalDataset | None:
    """Every check that needs no training, before any long work; ``workdir`` is made only once the corpus is found.

    A missing corpus, a run directory that is a file or not writable, a bad
    ``--base`` or evaluation set: each a one-line error naming it. Returns the
    given evaluation set, loaded.
    """
    import tempfile

    if not Path(config.corpus).exists():
        raise InputError(f"{config.corpus}: no such file or folder (the corpus to read)")
    corpus = Path(config.corpus)
    from ragtune.corpus.reader import scan_files

    if corpus.is_dir() and next(iter(scan_files(corpus, True)), None) is None:
        raise InputError(f"{corpus}: the corpus folder holds no files")
    resolve_model(config.train.base)  # a bad --base fails here, before the corpus is read
    if config.baseline:
        from ragtune.encoders.hosted import parse_baseline

        parse_baseline(config.baseline)  # syntax, package, key: no request
    given = load_eval_dataset(config.eval_data) if config.eval_data else None
    if config.queries:
        from ragtune.pairs.querylog import read_query_log

        read_query_log(config.queries)  # a wrong --queries folder fails now, not after the pairs
    root = Path(workdir)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: --workdir is a file; give a folder for the run's artifacts")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{root}: cannot create the run directory ({exc.strerror or exc})") from exc
    try:  # a probe, not os.access: that says yes to root on a read-only mount
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise InputError(f"{root}: the run directory is not writable ({exc.strerror or exc})") from exc
    return given


def run_pipeline(
    config: RunConfig, workdir: str | Path, given: RetrievalDataset | None = None, *, checked: bool = False
) -> dict[str, Any]:
    """Run every stage into ``workdir``; returns the report record.

    ``checked``: :func:`preflight` already ran (the CLI runs it before it opens
    the run's log) and returned ``given``, so it is not done twice.
    """
    if not checked:
        given = preflight(config, workdir)
    rd = RunDir(Path(workdir))
    dataset_path = config.eval_data
    inputs = {"corpus": str(Path(config.corpus).resolve())}
    if dataset_path:
        inputs["eval"] = str(Path(dataset_path).resolve())
        if Path(dataset_path).is_file():
            inputs["eval_sha256"] = sha256_file(dataset_path)
    rd.set_config(config.to_dict(), inputs)

    chunks = stage_chunks(rd, config.corpus, config.chunk)
    pairs = stage_pairs(rd, chunks, config.train.base, config.generation)
    model_dir = stage_train(rd, pairs, config.train, chunks)
    if config.queries:  # the model that was served labels its questions, then trains further on them
        served = stage_served(rd, chunks, model_dir, config.queries)
        model_dir = stage_served_train(rd, model_dir, served, config.train, pairs, chunks)
    # one tuned encoder for index and evaluation: the windows it indexes are the
    # corpus windows evaluation scores (saves one encoding of the corpus, ~10 s on the sample)
    tuned = Encoder(model_dir, devices=encoding_devices(), remember_windows=True)
    stage_index(rd, chunks, model_dir, config.collection, config.qdrant, encoder=tuned)
    dataset = given or from_pairs(pairs, chunks, split="val", name="held-out generated pairs")
    dims = rd.record["stages"]["train"].get("dims")  # what training used, recorded by stage_train
    if not dims:
        width = tuned.dimension
        dims = config.train.dims_for(width) if config.train.matryoshka else [width]
    extra = {
        "chunks": rd.record["stages"].get("chunks", {}),
        "pairs": rd.record["stages"].get("pairs", {}),
        "training": rd.record["stages"].get("train", {}),
        "index": rd.record["stages"].get("index", {}),
        **({"served": rd.record["stages"]["served"], "served_training": rd.record["stages"].get("served_train", {})}
           if config.queries else {}),
    }
    report = stage_evaluate(
        rd, dataset, config.train.base, model_dir, dims, config.long_chunks, extra=extra, judge_llm=config.generation.llm,
        encoders={"tuned": tuned}, baseline=config.baseline, judge_queries=config.judge_queries,
    )
    from ragtune.train.card import add_evaluation

    add_evaluation(model_dir, report)
    if config.export:
        speed = stage_export(rd, chunks, model_dir, config.export, dataset).get("speed")
        if speed and report.get("speed") != speed:  # the report gains its speed section
            report["speed"] = speed
            write_report(report, rd.report)
            rd.record_artifact("evaluate", rd.report / "report.json")
    rd.record["report"] = str(rd.report / "report.json")
    rd.save()
    return report


def _tree_hash(corpus: str | Path) -> str:
    """Cheap identity of a corpus: names, sizes and mtimes of its files."""
    p = Path(corpus)
    if p.is_file():
        st = p.stat()
        return fingerprint(p.name, st.st_size, st.st_mtime_ns)
    if not p.exists():
        return "missing"
    from ragtune.corpus.reader import (
        scan_files,  # the files the reader reads, symlinked folders included
    )

    items = sorted((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns) for f in scan_files(p, True))
    return fingerprint(items)
