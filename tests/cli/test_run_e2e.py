"""``ragtune run`` end to end, as a person runs it: the main job on the shipped sample corpus (a few
training steps), its artifacts, re-runs, exports, console and model card; on ../shared/data when marked slow.

One run is made per module and only read; a test that runs anything more on it works on its own copy
(``copy_of``), so no test depends on another's side effects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_CORPUS, cli, cli_timed, run_inprocess, shared_data

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The main job on the shipped sample corpus, shortened to a few training steps, as a person runs it."""
    work = tmp_path_factory.mktemp("run")
    proc, lines = cli_timed("run", str(SAMPLE_CORPUS), "--workdir", str(work), "--max-pairs", "64", "--max-steps", "2",
                            "--max-seq-length", "96", "--batch-size", "16")
    return work, proc, lines


def copy_of(sample_run, tmp_path: Path) -> Path:
    """A private copy of the module's run directory, for a test that runs something on it."""
    work = tmp_path / "run"
    shutil.copytree(sample_run[0], work)
    return work


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


def test_query_returns_chunks_from_embedded_qdrant(sample_run, tmp_path):
    work = copy_of(sample_run, tmp_path)
    proc = cli("query", "What does error E-214 mean on the inverter?", "--model", str(work / "model"),
               "--store", str(work / "qdrant"), "--collection", "ragtune", "--top-k", "3", "--json")
    hits = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(hits) == 3
    assert any("inverter-error-codes" in h["source"] for h in hits)
    assert "E-214" in hits[0]["text"] or any("E-214" in h["text"] for h in hits)


def test_rerun_resumes_and_skips_finished_stages(sample_run, tmp_path):
    work = copy_of(sample_run, tmp_path)
    before = json.loads((work / "run.json").read_text())["stages"]
    cli("run", str(SAMPLE_CORPUS), "--workdir", str(work), "--max-pairs", "64", "--max-steps", "2",
        "--max-seq-length", "96", "--batch-size", "16")
    after = json.loads((work / "run.json").read_text())["stages"]
    for stage in ("chunks", "pairs", "train", "evaluate"):
        assert after[stage]["finished"] == before[stage]["finished"], stage


def test_reruns_are_safe_copied_retrained_and_damaged(sample_run, tmp_path, capsys):
    """A copied run directory is done; another training option retrains and the index follows the new
    model (rebuilt, not refused); a truncated pairs.jsonl and a cut model.safetensors are named and redone."""
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


def test_run_export_measures_each_form_into_the_report(sample_run, tmp_path):
    """``run --export onnx-int8`` on a finished run: only the export stage runs, and the report
    gains a speed section with torch and the int8 form side by side (docs/s, latency, quality)."""
    pytest.importorskip("onnxruntime")
    work = copy_of(sample_run, tmp_path)
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
    # an export deleted by hand is named and made again (issue 28): tests/pipeline/test_stages.py


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
