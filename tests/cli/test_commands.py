"""The ``ragtune`` commands one by one: counts, one-line errors on bad input, options, config files, defaults."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import SAMPLE_CORPUS, cli, run_inprocess


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
        (["index", "{corpus}", "--model", "default", "--qdrant", "{tmp}/q", "--collection", "x" * 300],
         "collection='xxxxxxxx"),
        (["query", "x", "--model", "default", "--qdrant", "{tmp}/q", "--collection", "x" * 300], "too long"),
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


@pytest.mark.e2e
def test_set_reaches_lora_and_config_file_replays_it(tmp_path, capsys):
    """--set reaches nested settings (train.lora.rank trains a LoRA adapter); the same settings
    from a TOML --config resolve to the same run.json config, so the re-run skips every stage;
    another --lora-r retrains and re-indexes."""
    from ragtune.encoders.loading import load_model, model_fingerprint
    from ragtune.index.chunk_index import open_index

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

    # issue 28: another rank retrains, and the index stage follows the new adapter (its fingerprint
    # differs from the rank-16 one): every chunk re-encoded, the collection's fingerprint the new model's
    cli("run", str(SAMPLE_CORPUS), "--workdir", str(work), "--lora-r", "8", "--epochs", "1", "--max-steps", "2",
        "--max-seq-length", "96", "--no-summarize", "--batch-size", "8", "--max-pairs", "40", "--no-long")
    fourth = json.loads((work / "run.json").read_text())["stages"]
    assert fourth["train"]["finished"] != first["stages"]["train"]["finished"]
    assert fourth["index"]["finished"] != first["stages"]["index"]["finished"], "the index stage was skipped"
    assert fourth["index"]["fingerprint"] != first["stages"]["index"]["fingerprint"]
    assert fourth["index"]["encoded"] == fourth["index"]["points"] > 0
    model = load_model(work / "model")
    with open_index(work / "qdrant", "ragtune", model, "model", create=False) as index:
        assert index.metadata()["fingerprint"] == model_fingerprint(model)


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


def test_judge_sample_size_must_be_positive(tmp_path, capsys):
    code, _, err = run_inprocess(capsys, "run", str(SAMPLE_CORPUS), "--workdir", str(tmp_path / "w"),
                                 "--judge-queries", "0")
    assert code == 1
    assert err.strip() == "error: judge_queries=0: give a positive number of questions to judge"
    assert not (tmp_path / "w").exists()  # refused before any work


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



def test_index_of_part_of_the_corpus_asks_for_prune(tmp_path, tiny_corpus, capsys, model_path):
    """`ragtune index` of one file or a subfolder of the folder a collection follows removes
    nothing: it is refused, naming how many points would go and --prune, and the collection is
    unchanged; --prune makes the collection follow the part. A symlink out of the corpus is
    skipped unless --follow-symlinks."""
    import re
    import shutil

    corpus = tmp_path / "c"
    shutil.copytree(tiny_corpus, corpus)
    (corpus / "sub").mkdir()
    shutil.move(corpus / "fares.txt", corpus / "sub" / "fares.txt")
    (tmp_path / "secret.txt").write_text("The vault code of the tram depot is 4711.\n")
    (corpus / "secret.txt").symlink_to(tmp_path / "secret.txt")
    base = ["--model", model_path, "--qdrant", str(tmp_path / "q"), "--collection", "c", "--chunk-size", "128"]

    def index(path, *extra) -> tuple[int, dict[str, int], str]:
        code, stdout, err = run_inprocess(capsys, "index", str(path), *base, *extra)
        m = re.search(r"(\d+) chunks encoded, (\d+) kept, (\d+) removed; .* holds (\d+) points", stdout)
        return code, dict(zip(("encoded", "kept", "removed", "points"), map(int, m.groups()))) if m else {}, err

    code, first, err = index(corpus)
    assert code == 0 and first["encoded"] == first["points"] > 0, err
    chunks = _chunks(corpus)
    sub = len(_chunks(corpus / "sub"))
    # one file keeps its own source ("timetable.md"); a subfolder's sources are relative to it
    for part, goes in ((corpus / "timetable.md", sum(c.source != "timetable.md" for c in chunks)),
                       (corpus / "sub", len(chunks))):
        code, _, err = index(part)
        assert code == 1 and len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1, err
        assert f"would remove {goes} points" in err and "--prune" in err and "nothing was changed" in err, err
        assert f"follows {corpus}" in err
    code, again, err = index(corpus)  # the refused runs changed nothing
    assert code == 0 and again == {"encoded": 0, "kept": first["points"], "removed": 0, "points": first["points"]}, err
    code, followed, err = index(corpus, "--follow-symlinks")
    assert code == 0 and followed["encoded"] == 1 and followed["points"] == first["points"] + 1, err
    code, pruned, err = index(corpus / "sub", "--prune")
    assert code == 0 and pruned["points"] == pruned["encoded"] == sub and pruned["removed"] == followed["points"], err
    code, again, err = index(corpus / "sub")  # the collection now follows sub
    assert code == 0 and again["points"] == sub and again["encoded"] == 0, err


def _chunks(path):
    from ragtune.corpus.reader import ChunkConfig, load_corpus

    return load_corpus(path, ChunkConfig(chunk_size=128)).chunks


@contextlib.contextmanager
def _small_disk(path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (root with CAP_SYS_ADMIN; else the test is skipped)."""
    path.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=60)


def test_a_full_disk_is_one_line_and_the_collection_survives(tmp_path, tiny_corpus, capsys, model_path):
    """The corpus grows while the disk holding the collection fills up: `ragtune index` exits 1
    with one line naming the folder and the disk (not a Bus error from the engine's memory maps);
    the previous points are intact and searchable, and once there is room the next run succeeds."""
    import re
    import shutil

    from ragtune.index.chunk_index import ChunkIndex, connect

    docs = tmp_path / "docs"
    shutil.copytree(tiny_corpus, docs)
    with _small_disk(tmp_path / "disk", "96m") as disk:
        opts = ["--model", model_path, "--qdrant", str(disk / "q"), "--collection", "c"]
        code, out, err = run_inprocess(capsys, "index", str(docs), *opts, "--chunk-size", "128")
        assert code == 0, err
        before = int(re.search(r"holds (\d+) points", out).group(1))
        for f in sorted(SAMPLE_CORPUS.rglob("*.md"))[:12]:
            shutil.copy(f, docs / f.name)

        def full_disk_refused(what: str) -> None:
            (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - 256 * 1024))
            # a process of its own: the engine's Bus error (SIGBUS) would end pytest itself
            proc = cli("index", str(docs), *opts, "--chunk-size", "128", check=False)
            assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
            lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
            assert len(lines) == 1 and f"{disk / 'q'}: no space left on the disk at {disk}" in lines[0], proc.stderr
            assert what in lines[0], lines[0]
            (disk / "filler").unlink()
            with ChunkIndex(connect(disk / "q"), "c", owns_client=True) as idx:
                assert idx.count() == before
            code, out, err = run_inprocess(capsys, "query", "Which depot maintains the tram fleet?", *opts, "--json",
                                           "--top-k", "1")
            assert code == 0 and json.loads(out)["source"] == "depot.html", err

        # on tmpfs, opening the collection maps its in-memory files whole (the first time: ~42 MiB)
        full_disk_refused("opening collection 'c'")
        # opened once, it takes no more room to open: the write is what does not fit
        full_disk_refused("writing 64 points")
        code, out, err = run_inprocess(capsys, "index", str(docs), *opts, "--chunk-size", "128")
        assert code == 0, err
        m = re.search(r"(\d+) chunks encoded, (\d+) kept, 0 removed; .* holds (\d+) points", out)
        assert m and int(m.group(2)) == before and int(m.group(3)) == before + int(m.group(1)) > before, out


def test_invalid_utf8_in_pairs_names_the_file_and_line(tmp_path, capsys):
    """Issue 28: a pairs.jsonl with a Latin-1 byte on line 3 is one error line naming the file and the line."""
    pairs = tmp_path / "pairs.jsonl"
    row = {"query": "how often do trams run", "positive": "Every 6 minutes.", "positive_id": "a#0"}
    good = (json.dumps(row) + "\n").encode()
    pairs.write_bytes(good + good + json.dumps({**row, "query": "caf\u00e9"}).encode().replace(b"\\u00e9", b"\xe9")
                      + b"\n")
    code, _, err = run_inprocess(capsys, "train", str(pairs), "--out", str(tmp_path / "m"))
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: {pairs}:3: not valid UTF-8"), err
