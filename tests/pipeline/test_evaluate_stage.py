"""The evaluate stage of a run that trained further on served queries (``ragtune run --queries``): its
hybrid rows use the fusion fitted for ``model-served/``, and a new served-queries model redoes it."""

from __future__ import annotations

import shutil

from tests.helpers import FACTS


def test_the_served_model_is_evaluated_at_its_own_fusion_and_a_new_one_redoes_the_stage(tmp_path, model_path,
                                                                                        tiny_chunks):
    from ragtune.evaluation.datasets import RetrievalDataset
    from ragtune.index.fusion import HybridConfig, write_hybrid
    from ragtune.pipeline.rundir import RunDir
    from ragtune.pipeline.stages import stage_evaluate

    by_source = {c.source: c.id for c in tiny_chunks}
    ds = RetrievalDataset(name="facts", queries={f"q{i}": q for i, q in enumerate(FACTS)},
                          corpus={c.id: c.text for c in tiny_chunks},
                          relevant={f"q{i}": {by_source[src]: 1} for i, src in enumerate(FACTS.values())})
    rd = RunDir(tmp_path / "run")
    shutil.copytree(model_path, rd.served_model)
    write_hybrid(rd.served_model, HybridConfig(alpha=0.35, fitted={"by": "served model's fit"}))
    # the train stage fitted the synthetic model (model/) and the base model
    rd.record["stages"]["train"] = {"fingerprint": "train-fp", "hybrid": {
        "tuned": HybridConfig(alpha=0.8, fitted={"by": "synthetic model's fit"}).to_json(),
        "base": HybridConfig(alpha=0.7, fitted={"by": "base model's fit"}).to_json()}}
    rd.record["stages"]["served_train"] = {"fingerprint": "served-1"}

    def evaluate() -> str:
        stage_evaluate(rd, ds, model_path, rd.served_model, [384], long_chunks=False)
        return rd.record["stages"]["evaluate"]["finished"]

    first = evaluate()
    used = rd.record["stages"]["evaluate"]["hybrid"]
    assert (used["tuned"]["alpha"], used["tuned"]["fitted"]["by"]) == (0.35, "served model's fit")
    assert used["base"]["alpha"] == 0.7
    assert evaluate() == first  # nothing changed: the report stands
    rd.record["stages"]["served_train"] = {"fingerprint": "served-2"}  # more logs: a new model-served/
    assert evaluate() != first
