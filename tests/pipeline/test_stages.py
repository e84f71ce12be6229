"""``ragtune.pipeline.stages`` (issue 28): exports are verified like every other artifact, and redone when a file
is missing (deleted, or a retrained model's new folder without them) or the model's fingerprint changed."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def test_a_missing_export_or_another_model_redoes_the_export_stage(tmp_path, model_path, tiny_chunks, caplog,
                                                                   monkeypatch):
    import ragtune.encoders.export
    from ragtune.pipeline.rundir import RunDir
    from ragtune.pipeline.stages import stage_export

    calls: list[str] = []
    real = ragtune.encoders.export.export_model
    monkeypatch.setattr(ragtune.encoders.export, "export_model", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    rd = RunDir(tmp_path / "run")
    shutil.copytree(model_path, rd.model)
    onnx = rd.model / "onnx" / "model.onnx"

    def exports() -> int:
        """Run the stage; how many exports it made."""
        before = len(calls)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ragtune.pipeline.rundir"):
            stage_export(rd, tiny_chunks, rd.model, ["onnx"])
        assert onnx.is_file() and rd.record["stages"]["export"]["status"] == "done"
        return len(calls) - before

    assert exports() == 1
    assert exports() == 0  # nothing changed: skipped

    shutil.rmtree(rd.model / "onnx")  # deleted by hand
    assert exports() == 1 and "model/onnx/model.onnx: missing" in caplog.text

    shutil.rmtree(rd.model)  # a retrain that wrote the same weights into a new folder, without onnx/
    shutil.copytree(model_path, rd.model)
    assert exports() == 1

    onnx.write_bytes(onnx.read_bytes()[:1000])  # cut short
    assert exports() == 1 and "model/onnx/model.onnx: not what the export stage wrote" in caplog.text

    pooling = rd.model / "1_Pooling" / "config.json"  # another model (CLS pooling), its old export still there
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "pooling_mode_cls_token": True,
                                   "pooling_mode_mean_tokens": False}))
    assert exports() == 1 and "inputs or options of the export stage changed" in caplog.text
    assert exports() == 0
    assert rd.outputs("export") == [onnx]
