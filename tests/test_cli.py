"""The ``ragtune`` CLI end to end on real data, and its one-line errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import SAMPLE_CORPUS, shared_data


def cli(*args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the installed console script (as a user would), offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    exe = os.path.join(os.path.dirname(sys.executable), "ragtune")
    proc = subprocess.run([exe, "-q", *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"ragtune {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def run_inprocess(capsys, *args: str) -> tuple[int, str, str]:
    """Call the CLI entry point in this process (fast), returning (exit code, stdout, stderr)."""
    from ragtune.cli import app as cli_app

    old = sys.argv
    sys.argv = ["ragtune", "-q", *args]
    try:
        cli_app.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_timed(*args: str, timeout: int = 900) -> tuple[subprocess.CompletedProcess, list[tuple[float, str]]]:
    """Run the console script as a person would (no -q, output not a terminal), noting when
    each line of its console output arrives (seconds from the start)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAGTUNE_PROGRESS_INTERVAL="2")
    exe = os.path.join(os.path.dirname(sys.executable), "ragtune")
    t0 = time.monotonic()
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[tuple[float, str]] = []
    for line in proc.stdout:  # ends when the process closes its output
        lines.append((time.monotonic() - t0, line.rstrip("\n")))
    code = proc.wait(timeout=timeout)
    lines.append((time.monotonic() - t0, "<exit>"))
    out = "\n".join(text for _, text in lines)
    if code != 0:
        raise AssertionError(f"ragtune {' '.join(args)} failed ({code}):\n{out[-3000:]}")
    return subprocess.CompletedProcess(proc.args, code, out, ""), lines


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The main job on the shipped sample corpus, shortened to a few training steps, as a person runs it."""
    work = tmp_path_factory.mktemp("run")
    proc, lines = cli_timed("run", str(SAMPLE_CORPUS), "--workdir", str(work), "--max-pairs", "64", "--max-steps", "2",
                            "--max-seq-length", "96", "--batch-size", "16")
    return work, proc, lines


def test_run_leaves_every_artifact(sample_run):
    work, proc, _ = sample_run
    for name in ("chunks.jsonl", "pairs.jsonl", "run.json", "model/ragtune.json", "qdrant",
                 "report/report.json", "report/report.md", "report/report.html"):
        assert (work / name).exists(), name
    run = json.loads((work / "run.json").read_text())
    assert {"chunks", "pairs", "train", "index", "evaluate"} <= set(run["stages"])
    assert all(s["status"] == "done" for s in run["stages"].values())
    assert run["versions"]["sentence-transformers"] and run["inputs"]["corpus_files"]
    report = json.loads((work / "report" / "report.json").read_text())
    for label in ("base", "tuned", "base+long", "tuned+long"):
        m = report["metrics"][label]["384"]
        assert set(m) >= {"hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "recall@10"}
    assert "ndcg@10" in report["comparison"]["tuned-base"]["384"]
    # the headline: ragtune's default retriever (tuned + BM25) against the best retriever without ragtune
    for label in ("bm25", "base+hybrid", "tuned+hybrid"):
        assert "ndcg@10" in report["metrics"][label]["384"], label
    head = report["headline"]
    assert head["default"] == "tuned+hybrid" and head["against"] in ("bm25", "base+hybrid", "base")
    assert head["key"] in report["comparison"] and "tuned+hybrid-base+hybrid" in report["comparison"]
    fitted = json.loads((work / "model" / "ragtune_hybrid.json").read_text())
    assert run["stages"]["train"]["hybrid"]["tuned"]["alpha"] == fitted["alpha"]
    first = (work / "report" / "report.md").read_text().split("## Summary")[0]
    assert "ragtune's default retriever" in first and any(w in first for w in ("BM25 alone", "fused with BM25", "base model"))
    assert "report.html" in proc.stdout
    # the model card in the model folder carries the measured before/after figures
    card = json.loads((work / "model" / "ragtune.json").read_text())
    assert card["evaluation"]["metrics"]["tuned"]["384"]["ndcg@10"] == report["metrics"]["tuned"]["384"]["ndcg@10"]
    md = (work / "model" / "RAGTUNE.md").read_text()
    assert "| tuned | 384 |" in md and "| base | 384 |" in md and "95% CI" in md
    # the run tunes on the corpus it indexes, so the chunk-summary stage ran on its long chunks
    summary = card["result"]["summary"]
    assert summary["chunks"] > 0 and summary["distance_after"] < summary["distance_before"]
    assert "Chunk summaries:" in md


def test_tuned_model_loads_with_sentence_transformers(sample_run):
    from sentence_transformers import SentenceTransformer

    work, _, _ = sample_run
    model = SentenceTransformer(str(work / "model"))
    assert model.encode(["inverter error"]).shape == (1, 384)


def test_query_returns_chunks_from_embedded_qdrant(sample_run):
    work, _, _ = sample_run
    proc = cli("query", "What does error E-214 mean on the inverter?", "--model", str(work / "model"),
               "--store", str(work / "qdrant"), "--collection", "ragtune", "--top-k", "3", "--json")
    hits = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(hits) == 3
    assert any("inverter-error-codes" in h["source"] for h in hits)
    assert "E-214" in hits[0]["text"] or any("E-214" in h["text"] for h in hits)


def test_rerun_resumes_and_skips_finished_stages(sample_run):
    work, _, _ = sample_run
    before = json.loads((work / "run.json").read_text())["stages"]
    cli("run", str(SAMPLE_CORPUS), "--workdir", str(work), "--max-pairs", "64", "--max-steps", "2",
        "--max-seq-length", "96", "--batch-size", "16")
    after = json.loads((work / "run.json").read_text())["stages"]
    for stage in ("chunks", "pairs", "train", "evaluate"):
        assert after[stage]["finished"] == before[stage]["finished"], stage


def test_reruns_are_safe_copied_retrained_and_damaged(sample_run, tmp_path, capsys):
    """A copied run directory is done; another training option retrains and the index follows the new
    model (rebuilt, not refused); a truncated pairs.jsonl and a cut model.safetensors are named and redone."""
    import shutil

    from ragtune.encoders.loading import load_model, model_fingerprint
    from ragtune.index.chunk_index import open_index

    src, _, _ = sample_run
    work = tmp_path / "copy"
    shutil.copytree(src, work)
    args = ["run", str(SAMPLE_CORPUS), "--workdir", str(work), "--max-pairs", "64", "--max-seq-length", "96",
            "--batch-size", "16"]
    stages = lambda: json.loads((work / "run.json").read_text())["stages"]  # noqa: E731
    before = stages()
    assert run_inprocess(capsys, *args, "--max-steps", "2")[0] == 0  # in this process: it only checks
    assert all(stages()[s]["finished"] == before[s]["finished"] for s in before), "a copied run redid a stage"

    args += ["--no-long", "--no-summarize"]  # the retrained runs skip what this test does not look at
    proc = cli(*args, "--max-steps", "3")
    after = stages()
    assert after["train"]["steps"] == 3 and after["index"]["replaced"]["fingerprint"]
    assert after["evaluate"]["finished"] != before["evaluate"]["finished"]
    report = json.loads((work / "report" / "report.json").read_text())
    assert report["training"]["steps"] == 3
    model = load_model(work / "model")
    with open_index(work / "qdrant", "ragtune", model, "model", create=False) as index:  # refuses another model's
        assert index.metadata()["fingerprint"] == model_fingerprint(model) and index.count() == after["index"]["points"]
    assert "model: inputs or options of the train stage changed" in proc.stderr
    assert "{'loss'" not in proc.stdout + proc.stderr and "it/s" not in proc.stdout + proc.stderr  # -q: no bars, no dicts
    assert not list((work / "qdrant" / "edge").glob("*.rebuild*")) and not list((work / "qdrant" / "edge").glob("*.replaced"))

    pairs = (work / "pairs.jsonl").read_text().splitlines(keepends=True)
    (work / "pairs.jsonl").write_text("".join(pairs[:10]))  # cut at a line break: still valid JSONL
    weights = work / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    proc = cli(*args, "--max-steps", "3")
    warned = [ln for ln in proc.stderr.splitlines() if "not what the" in ln]
    assert any("pairs.jsonl" in ln for ln in warned) and any("model.safetensors" in ln for ln in warned), proc.stderr
    assert len((work / "pairs.jsonl").read_text().splitlines()) == len(pairs)
    assert stages()["train"]["train_pairs"] == after["train"]["train_pairs"]
    load_model(work / "model")  # whole again


def test_run_export_measures_each_form_into_the_report(sample_run):
    """``run --export onnx-int8`` on a finished run: only the export stage runs, and the report
    gains a speed section with torch and the int8 form side by side (docs/s, latency, quality)."""
    pytest.importorskip("onnxruntime")
    work, _, _ = sample_run
    before = json.loads((work / "run.json").read_text())["stages"]
    cli("run", str(SAMPLE_CORPUS), "--workdir", str(work), "--max-pairs", "64", "--max-steps", "2",
        "--max-seq-length", "96", "--batch-size", "16", "--export", "onnx-int8")
    after = json.loads((work / "run.json").read_text())["stages"]
    for stage in ("chunks", "pairs", "train", "evaluate"):
        assert after[stage]["finished"] == before[stage]["finished"], stage
    report = json.loads((work / "report" / "report.json").read_text())
    forms = {r["form"]: r for r in report["speed"]["forms"]}
    assert list(forms) == ["torch", "onnx-int8"]
    assert forms["torch"]["x_torch_docs_per_s"] == 1.0 and forms["onnx-int8"]["docs_per_s"] > 0
    assert forms["onnx-int8"]["file"].startswith("onnx/model_qint8_")
    assert forms["onnx-int8"]["size_mb"] < forms["torch"]["size_mb"]
    # the torch row's quality is the report's own tuned figure: one evaluation loop
    assert forms["torch"]["plain"]["ndcg@10"] == pytest.approx(report["metrics"]["tuned"]["384"]["ndcg@10"], abs=1e-6)
    assert abs(forms["onnx-int8"]["ndcg_delta_plain"]) <= 0.05
    md = (work / "report" / "report.md").read_text()
    assert "## Speed of each form" in md and "| onnx-int8 (onnx/model_qint8_" in md
    assert "id='speed'" in (work / "report" / "report.html").read_text()


def test_generate_prints_counts(tmp_path, tiny_corpus, capsys):
    out = tmp_path / "p.jsonl"
    code, stdout, _ = run_inprocess(capsys, "generate", str(tiny_corpus), "--out", str(out), "--chunk-size", "128")
    assert code == 0
    assert "chunks" in stdout and "pairs kept" in stdout and "dropped" in stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    chunk_ids = {json.loads(line)["id"] for line in (tmp_path / "p.chunks.jsonl").read_text().splitlines()}
    assert rows and all(r["positive_id"] in chunk_ids for r in rows)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "/no/such/corpus", "--workdir", "{tmp}/w"], "/no/such/corpus"),
        (["run", "{tmp}/empty", "--workdir", "{tmp}/w"], "empty"),
        (["generate", "/no/such/file.pdf", "--out", "{tmp}/p.jsonl"], "/no/such/file.pdf"),
        (["evaluate", "--model", "default", "--data", "{tmp}/wrong.json", "--out", "{tmp}/r"], "wrong.json"),
        (["train", "{tmp}/wrong.json", "--out", "{tmp}/m"], "wrong.json"),
        (["run", "{corpus}", "--workdir", "{tmp}/w", "--eval", "{tmp}/wrong.json"], "wrong.json"),
        (["query", "x", "--model", "{tmp}/nomodel", "--qdrant", "{tmp}/q", "--collection", "c"], "nomodel"),
        (["train", "{tmp}/wrong.json", "--out", "{tmp}/m", "--loss", "bogus"], "loss"),
        (["run", "{corpus}", "--workdir", "{tmp}/wrong.json"], "--workdir is a file"),
        (["run", "{corpus}", "--workdir", "{tmp}/w", "--collection", "../x"], "collection='../x'"),
        (["run", "{corpus}", "--workdir", "{tmp}/w", "--max-pairs", "0"], "max_pairs=0"),
        (["run", "{corpus}", "--workdir", "{tmp}/w", "--max-steps", "0"], "max_steps=0"),
        (["query", "x", "--model", "default", "--qdrant", "{tmp}/q", "--collection", "c", "--top-k", "0"], "--top-k"),
        (["query", "--model", "default"], "Missing argument"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, tiny_corpus, capsys, args, needle):
    (tmp_path / "empty").mkdir()
    (tmp_path / "wrong.json").write_text(json.dumps({"questions": ["what?"]}))
    (tmp_path / "nomodel").mkdir()
    args = [a.format(tmp=tmp_path, corpus=tiny_corpus) for a in args]
    code, _, err = run_inprocess(capsys, *args)
    assert code in (1, 2)  # 2: a usage error (a bad option value), as click counts them
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and err.strip() == lines[0]
    assert not (tmp_path / "w").exists()  # refused before the run directory is made


def test_one_bad_file_is_a_warning_not_a_failure(tmp_path, tiny_corpus, capsys):
    import shutil

    corpus = tmp_path / "c"
    shutil.copytree(tiny_corpus, corpus)
    (corpus / "corrupt.pdf").write_bytes(b"%PDF-1.7 broken")
    code, stdout, err = run_inprocess(capsys, "generate", str(corpus), "--out", str(tmp_path / "p.jsonl"), "--chunk-size", "128")
    assert code == 0
    assert "corrupt.pdf" in err and "skipped" in err
    assert "(1 skipped)" in stdout


def test_generate_survives_an_11_mb_single_paragraph_file(tmp_path, tiny_corpus, capsys):
    """The sentence splitter never sees a huge unbroken string: generate finishes, with pairs from the good files."""
    import random
    import shutil

    corpus = tmp_path / "c"
    shutil.copytree(tiny_corpus, corpus)
    words = ["tram", "depot", "fare", "ticket", "route", "platform", "timetable", "driver"]
    rng = random.Random(3)
    (corpus / "huge.txt").write_text(" ".join(rng.choice(words) for _ in range(1_700_000)) + ".")
    assert (corpus / "huge.txt").stat().st_size > 11e6
    out = tmp_path / "p.jsonl"
    code, stdout, err = run_inprocess(capsys, "generate", str(corpus), "--out", str(out))
    assert code == 0, err
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    chunks = [json.loads(line) for line in (tmp_path / "p.chunks.jsonl").read_text().splitlines()]
    assert {c["source"] for c in chunks} >= {"fares.txt", "depot.html", "huge.txt"}
    by_id = {c["id"]: c["source"] for c in chunks}
    assert "(0 skipped)" in stdout
    assert {by_id[p["positive_id"]] for p in pairs} >= {"fares.txt", "depot.html"}  # pairs from the good files


class _BrokenEntryPoint:
    name = "serve"

    def load(self):
        raise ImportError("No module named 'fastapi'")


@pytest.mark.parametrize("entry_points", [[], [_BrokenEntryPoint()]], ids=["absent", "unimportable"])
def test_serve_without_the_server_extra_is_one_line(capsys, monkeypatch, entry_points):
    import typer

    from ragtune.cli import app as cli_app

    app = typer.Typer()
    app.callback()(cli_app.global_options)  # ragtune's own -q / --version
    cli_app.load_commands(app, entry_points)
    monkeypatch.setattr(cli_app, "app", app)
    code, _, err = run_inprocess(capsys, "serve", "--model", "m", "--port", "1")
    assert code == 1 and "Traceback" not in err
    assert err.startswith('error: ragtune serve needs the server extra: pip install "ragtune[server]"')
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_readme_main_command_on_sample_corpus(tmp_path):
    """Acceptance: the README's main command, unshortened."""
    cli("run", str(SAMPLE_CORPUS), "--workdir", str(tmp_path / "w"), timeout=3600)
    assert (tmp_path / "w" / "report" / "report.html").exists()


@pytest.mark.slow
def test_uber_with_given_eval_set(tmp_path):
    """Acceptance: the Uber 10-K with its 881 labelled questions, base vs tuned."""
    pdf = shared_data("tenk", "uber_2021.pdf")
    ds = shared_data("tenk", "uber_val_pairs.json")
    cli("run", str(pdf), "--workdir", str(tmp_path / "w"), "--eval", str(ds), timeout=7200)
    report = json.loads((tmp_path / "w" / "report" / "report.json").read_text())
    assert report["dataset"]["queries"] == 881
    assert {"base", "tuned"} <= set(report["metrics"])


def test_console_shows_only_ragtune_progress_and_never_goes_quiet(sample_run):
    """One progress display: every stage prints ragtune's own lines (with counts), no third-party
    bars or Trainer log dicts reach the console, and no stretch of the run is silent for 10 s
    (the line display repeats the running task's status every RAGTUNE_PROGRESS_INTERVAL=2 s)."""
    work, proc, lines = sample_run
    text = proc.stdout
    for stage in ("[1/5] chunks", "[2/5] pairs", "[3/5] training", "[4/5] index", "[5/5] evaluation"):
        assert f"{stage}: " in text and "done" in text, stage
    for step in ("Reading documents: 37/37 files", "Training steps: 2/2 steps", "Chunk summaries: ", "Evaluating tuned+long"):
        assert step in text, step
    # tqdm bars ("it/s", "|██"), Trainer dicts ("{'loss'"), transformers' load report
    for noise in ("it/s]", "█", "{'", "Loading weights", "Computing widget examples", "warmup_ratio"):
        assert noise not in text, noise
    times = [0.0] + [t for t, _ in lines]
    gaps = [(b - a, line) for a, b, (_, line) in zip(times, times[1:], lines)]
    worst = max(gaps)
    assert worst[0] <= 10.0, f"silent for {worst[0]:.1f} s before: {worst[1]!r}"
    assert (work / "logs" / "ragtune.log").read_text().count("step ") >= 1  # Trainer logs kept in the log file


def test_model_card_snippet_runs_and_gives_the_tuned_vectors(sample_run):
    """RAGTUNE.md's usage snippet, executed as printed: RagtuneEmbedding returns the tuned model's vectors."""
    import re

    import numpy as np
    from sentence_transformers import SentenceTransformer

    work, _, _ = sample_run
    md = (work / "model" / "RAGTUNE.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", md, re.S).group(1)
    assert 'RagtuneEmbedding(model_path="' in snippet
    scope: dict = {}
    exec(snippet, scope)
    text = "How do I claim the battery warranty?"
    ref = SentenceTransformer(str(work / "model")).encode([text], normalize_embeddings=True)[0]
    assert np.allclose(scope["vector"], ref, atol=1e-5)
    assert np.allclose(scope["model"].encode([text], normalize_embeddings=True)[0], ref, atol=1e-5)


def test_set_reaches_lora_and_config_file_replays_it(tmp_path, capsys):
    """--set reaches nested settings (train.lora.rank trains a LoRA adapter); the same settings
    from a TOML --config resolve to the same run.json config, so the re-run skips every stage."""
    work = tmp_path / "w"
    settings = {"train.lora.rank": 16, "train.epochs": 1, "train.max_steps": 2, "train.max_seq_length": 96,
                "train.summarize": False, "train.batch_size": 8, "generation.max_pairs": 40, "long_chunks": False}
    sets = [a for k, v in settings.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    cli("run", str(SAMPLE_CORPUS), "--workdir", str(work), *sets)
    first = json.loads((work / "run.json").read_text())
    assert first["config"]["train"]["lora"]["rank"] == 16
    assert (work / "model" / "adapter_config.json").exists()  # a LoRA adapter, as peft saves it
    assert json.loads((work / "model" / "adapter_config.json").read_text())["r"] == 16
    toml = tmp_path / "ragtune.toml"
    toml.write_text(
        "long_chunks = false\n[generation]\nmax_pairs = 40\n"
        "[train]\nepochs = 1\nmax_steps = 2\nmax_seq_length = 96\nsummarize = false\nbatch_size = 8\n"
        "[train.lora]\nrank = 16\n"
    )
    # the replays redo nothing, so they run in this process (no second start-up)
    assert run_inprocess(capsys, "run", str(SAMPLE_CORPUS), "--workdir", str(work), "--config", str(toml))[0] == 0
    second = json.loads((work / "run.json").read_text())
    assert second["config"] == first["config"]
    for stage in ("chunks", "pairs", "train", "index", "evaluate"):
        assert second["stages"][stage]["finished"] == first["stages"][stage]["finished"], stage
    # autotrain's names reach the same settings: --lora-r 16 is the LoRA run above (nothing redone)
    code, _, err = run_inprocess(capsys, "run", str(SAMPLE_CORPUS), "--workdir", str(work), "--lora-r", "16", "--lora-alpha",
                                 "32", "--epochs", "1", "--max-steps", "2", "--max-seq-length", "96", "--no-summarize",
                                 "--batch-size", "8", "--max-pairs", "40", "--no-long")
    assert code == 0, err
    third = json.loads((work / "run.json").read_text())
    assert third["config"] == first["config"]
    assert third["stages"]["train"]["finished"] == first["stages"]["train"]["finished"]


AUTOTRAIN_NAMES = ("--lr", "--batch-size", "--epochs", "--warmup-ratio", "--weight-decay", "--gradient-accumulation",
                   "--mixed-precision", "--lora-r", "--lora-alpha", "--lora-dropout")


@pytest.mark.parametrize("command", ["train", "run"])
def test_help_lists_autotrain_option_names(command):
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ragtune"), command, "--help"],
                         capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"), check=True).stdout
    missing = [n for n in AUTOTRAIN_NAMES if f"{n} " not in out and f"{n}," not in out]
    assert not missing, missing


def test_autotrain_names_map_to_settings():
    from ragtune.cli.options import training_options
    from ragtune.config import build_config, parse_sets
    from ragtune.train import TrainConfig

    named = training_options(2e-4, 0.2, 0.0, 4, "none", 16, 8, 0.1, 16.0, None)
    cfg = build_config(TrainConfig, parse_sets(f"{k}={json.dumps(v)}" for k, v in named.items()))
    assert (cfg.warmup_ratio, cfg.weight_decay, cfg.gradient_accumulation, cfg.precision) == (0.2, 0.0, 4, "fp32")
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.plus_ratio) == (16, 8, 0.1, 16.0)
    assert cfg.lora.learning_rate == 2e-4  # --lr is LoRA's rate when LoRA is on (autotrain's meaning)
    assert training_options(None, None, None, None, None, None, None, None, None, None) == {}


def _commands() -> dict:
    import typer.main

    from ragtune.cli.app import app

    return typer.main.get_command(app).commands


@pytest.mark.parametrize("command", ["run", "index", "query"])
def test_store_is_the_engine_neutral_name_of_qdrant(command):
    store = next(p for p in _commands()[command].params if "--store" in p.opts)
    assert "--qdrant" in store.opts  # the older name stays
    assert all(where in store.help for where in ("folder", "Qdrant server URL", ":memory:", "milvus:"))


def test_cli_defaults_are_the_config_defaults():
    """Defaults are read from the stages' dataclasses, not restated."""
    from ragtune.corpus.reader import ChunkConfig
    from ragtune.pairs import GenerationConfig
    from ragtune.train import TrainConfig

    defaults = {(name, p.name): p.default for name, cmd in _commands().items() for p in cmd.params}
    assert defaults["generate", "chunk_size"] == defaults["index", "chunk_size"] == ChunkConfig.chunk_size
    assert defaults["generate", "val_fraction"] == GenerationConfig.val_fraction
    assert defaults["generate", "questions_per_chunk"] == GenerationConfig.questions_per_chunk
    train = TrainConfig()
    for option, field in [("batching", "batching"), ("rotate", "rotate"), ("epochs", "epochs"), ("loss", "loss"),
                          ("batch_size", "batch_size"), ("max_steps", "max_steps"), ("freeze_layers", "freeze_layers"),
                          ("interpolate", "interpolate"), ("early_stop", "early_stopping_patience"),
                          ("summarize", "summarize")]:
        assert defaults["train", option] == getattr(train, field), option


def test_unknown_setting_is_one_line_error(tmp_path, capsys):
    code, _, err = run_inprocess(capsys, "run", str(SAMPLE_CORPUS), "--workdir", str(tmp_path / "w"),
                                 "--set", "train.epoch=1")
    assert code == 1
    assert err.strip() == "error: train.epoch: no such setting; did you mean train.epochs?"


def test_index_follows_the_folder(tmp_path, tiny_corpus, capsys, model_path):
    """`ragtune index` twice encodes nothing the second time; an edited file is re-encoded alone."""
    import re
    import shutil

    corpus = tmp_path / "c"
    shutil.copytree(tiny_corpus, corpus)
    args = ["index", str(corpus), "--model", model_path, "--qdrant", str(tmp_path / "q"), "--collection", "c",
            "--chunk-size", "128"]

    def counts() -> dict[str, int]:
        code, stdout, err = run_inprocess(capsys, *args)
        assert code == 0, err
        m = re.search(r"(\d+) chunks encoded, (\d+) kept, (\d+) removed; .* holds (\d+) points", stdout)
        assert m, stdout
        return dict(zip(("encoded", "kept", "removed", "points"), map(int, m.groups())))

    first = counts()
    assert first["encoded"] == first["points"] > 0
    assert counts() == {"encoded": 0, "kept": first["points"], "removed": 0, "points": first["points"]}
    (corpus / "fares.txt").write_text((corpus / "fares.txt").read_text().replace("2.40 euros", "2.60 euros"))
    edited = counts()
    assert 0 < edited["encoded"] == edited["removed"] < first["points"]  # only fares.txt's changed chunks
    assert edited["points"] == first["points"]
    # edit one file and delete another: the collection equals a clean index of the new folder
    (corpus / "fares.txt").write_text((corpus / "fares.txt").read_text().replace("2.60 euros", "2.80 euros"))
    (corpus / "depot.html").unlink()
    changed = counts()
    assert changed["removed"] > changed["encoded"] > 0
    clean = ["index", str(corpus), "--model", model_path, "--store", str(tmp_path / "clean"), "--collection", "c",
             "--chunk-size", "128"]
    code, stdout, err = run_inprocess(capsys, *clean)
    assert code == 0, err
    assert f"holds {changed['points']} points" in stdout
    code, stdout, err = run_inprocess(capsys, "query", "Eastfield depot underfloor lathe technicians", "--model",
                                      model_path, "--store", str(tmp_path / "q"), "--collection", "c", "--top-k", "20",
                                      "--json")
    assert code == 0, err
    sources = [json.loads(line)["source"] for line in stdout.splitlines()]
    assert sources and not any("depot.html" in (s or "") for s in sources)
