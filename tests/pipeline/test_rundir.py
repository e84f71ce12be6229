"""``ragtune.pipeline.rundir`` (issue 28): a damaged ``run.json`` is one clear error naming it and the fix, never a
traceback and never a silent fresh start that would redo every finished stage (training included)."""

from __future__ import annotations

import json

import pytest

from ragtune.errors import InputError
from ragtune.pipeline.rundir import RUN_FILE, RunDir
from tests.helpers import run_inprocess

GOOD = {"created": "2025-01-01T00:00:00+00:00", "config": {"corpus": "c"}, "inputs": {},
        "stages": {"chunks": {"fingerprint": "f", "status": "done"}, "train": {"fingerprint": "t", "status": "done"}}}
TEXT = json.dumps(GOOD, indent=2)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (TEXT[: len(TEXT) // 2].encode(), "not valid JSON"),  # cut off
        (json.dumps({**GOOD, "stages": ["chunks", "train"]}).encode(), "'stages' is a list, not an object"),
        (json.dumps([GOOD]).encode(), "a JSON list, not an object"),
        (TEXT.replace('"c"', '"caf\\u00e9"').encode().replace(b"\\u00e9", b"\xe9"), "not UTF-8: byte 0xe9"),
        (json.dumps({**GOOD, "stages": {"train": "done"}}).encode(), "stage 'train' is a str, not an object"),
        (b"", "not valid JSON"),
    ],
    ids=["truncated", "stages-list", "top-level-array", "latin-1", "stage-string", "empty"],
)
def test_damaged_run_json_is_one_error_naming_the_file_and_the_fix(tmp_path, content, why):
    (tmp_path / RUN_FILE).write_bytes(content)
    with pytest.raises(InputError) as err:
        RunDir(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / RUN_FILE} is damaged (") and why in message, message
    assert message.endswith("move it away to start the run over, or restore it") and "\n" not in message
    assert (tmp_path / RUN_FILE).read_bytes() == content  # left as it was, for the user to restore


def test_ragtune_run_on_a_damaged_run_json_stops_before_any_stage(tmp_path, tiny_corpus, capsys):
    work = tmp_path / "w"
    work.mkdir()
    (work / RUN_FILE).write_text(TEXT[:-40])
    code, _, err = run_inprocess(capsys, "run", str(tiny_corpus), "--workdir", str(work))
    assert code == 1 and err.count("\n") == 1 and err.startswith(f"error: {work / RUN_FILE} is damaged"), err
    assert not (work / "chunks.jsonl").exists() and (work / RUN_FILE).read_text() == TEXT[:-40]


def test_an_intact_run_json_is_read_back(tmp_path):
    (tmp_path / RUN_FILE).write_text(TEXT)
    assert RunDir(tmp_path).record["stages"] == GOOD["stages"]
