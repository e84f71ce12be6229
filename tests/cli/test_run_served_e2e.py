"""``ragtune run --queries DIR`` end to end on the shipped sample corpus: served questions become
training pairs the tuned model trains further on, and more logs redo that training only. A module of its own (not on the main e2e module's
sample run) so that pytest-xdist can run it beside that module."""

from __future__ import annotations

import json

import pytest

from tests.helpers import SAMPLE_CORPUS, cli, run_inprocess

pytestmark = pytest.mark.e2e


def test_run_with_served_queries_trains_on_them_and_more_logs_redo_training_only(tmp_path, capsys):
    """`ragtune run --queries DIR`: logged questions (no labels) become pseudo-labelled pairs beside the
    synthetic ones; run.json and the report count them; more logs redo only the training on them."""
    from ragtune.pairs.querylog import QueryLog

    # questions as users might ask them: the offline generator's, about the same corpus
    asked_file = tmp_path / "asked.jsonl"
    assert run_inprocess(capsys, "generate", str(SAMPLE_CORPUS), "--out", str(asked_file), "--max-pairs", "40")[0] == 0
    asked = [json.loads(line)["query"] for line in asked_file.read_text().splitlines()]
    assert len(asked) >= 24
    logs = tmp_path / "logs"
    log = QueryLog(logs)
    for q in asked[:12]:
        log.search(q, "hybrid", 5, [])
    log.close()
    work = tmp_path / "run"
    args = ["run", str(SAMPLE_CORPUS), "--workdir", str(work), "--max-pairs", "64", "--max-steps", "2",
            "--max-seq-length", "96", "--batch-size", "16", "--queries", str(logs),
            "--no-long", "--no-summarize"]  # what this test does not look at
    stages = lambda: json.loads((work / "run.json").read_text())["stages"]  # noqa: E731
    cli(*args)
    first = stages()
    served = first["served"]
    assert served["logged_searches"] == 12 and served["pairs"] >= 2, served
    assert served["judge"] == "tuned+hybrid" and served["agree_k"] == 1
    # the synthetic-tuned model trains further on the served pairs alone, into model-served/
    assert first["served_train"]["pairs_by_source"]["served"] == served["pairs"]
    assert first["served_train"]["train_pairs"] == served["pairs"]
    assert first["train"]["train_pairs"] == first["served_train"]["pairs_by_source"]["synthetic"]
    card = json.loads((work / "model-served" / "ragtune.json").read_text())
    assert card["train"]["base"] == str(work / "model") and card["train"]["summarize"] is False
    assert json.loads((work / "report" / "report.json").read_text())["training"]["train_pairs"] > 0
    served_rows = [json.loads(x) for x in (work / "served_pairs.jsonl").read_text().splitlines()]
    assert len(served_rows) == served["pairs"] and {r["source"] for r in served_rows} == {"served"}
    report_md = (work / "report" / "report.md").read_text()
    assert "learned from 12 served questions" in report_md and "trained further on them" in report_md

    log = QueryLog(logs)
    for q in asked[12:24]:
        log.search(q, "hybrid", 5, [])
    log.close()
    cli(*args)
    second = stages()
    assert all(second[s]["finished"] == first[s]["finished"] for s in ("chunks", "pairs", "train"))
    assert second["served"]["logged_searches"] == 24
    assert second["served_train"]["finished"] != first["served_train"]["finished"]
    # the retrained model is indexed and evaluated again: the report speaks of the new logs
    assert all(second[s]["finished"] != first[s]["finished"] for s in ("index", "evaluate"))
    assert "learned from 24 served questions" in (work / "report" / "report.md").read_text()
