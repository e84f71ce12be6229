"""``ragtune.encoders.loading.model_fingerprint`` (issue 28): every weight and setting that changes a document's
vector changes the fingerprint; what leaves document vectors alone (a copy elsewhere, a query-only route) does not."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from ragtune.encoders.loading import load_model, model_fingerprint


def test_a_weight_in_the_middle_of_the_model_changes_the_fingerprint(st_model):
    """One attention weight of layer 3 (neither the first nor the last tensors) moved: another fingerprint,
    and the cached digest is not reused for the model changed in place."""
    import torch

    model = copy.deepcopy(st_model)
    before = model_fingerprint(model)
    assert before == model_fingerprint(st_model)
    name = "0.model.encoder.layer.3.attention.self.query.weight"
    with torch.no_grad():
        model.state_dict()[name][0, 0] += 1e-3
    assert model_fingerprint(model) != before


def test_document_path_settings_change_the_fingerprint(st_model):
    """Pooling mode, a Dense layer, the token limit and a document prompt: each changes the vectors, so the fingerprint."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling

    base = model_fingerprint(st_model)
    transformer = st_model[0]
    cls = SentenceTransformer(modules=[transformer, Pooling(384, pooling_mode="cls"), Normalize()], device="cpu")
    torch.manual_seed(0)
    dense = SentenceTransformer(modules=[transformer, st_model[1], Dense(384, 384), Normalize()], device="cpu")
    short = copy.deepcopy(st_model)
    short.max_seq_length = 64
    prompted = copy.deepcopy(st_model)
    prompted.prompts = {**(prompted.prompts or {}), "document": "passage: "}
    found = {model_fingerprint(m) for m in (cls, dense, short, prompted)}
    assert base not in found and len(found) == 4


def test_the_same_model_in_another_folder_has_the_same_fingerprint(model_path, tmp_path):
    """The fingerprint is of content, not of where the model lies; a changed pooling config in the folder counts."""
    copied = tmp_path / "m"
    shutil.copytree(model_path, copied)
    assert model_fingerprint(load_model(copied)) == model_fingerprint(load_model(model_path))
    pooling = copied / "1_Pooling" / "config.json"
    if not pooling.exists():
        pytest.skip("the bundled model has no 1_Pooling/config.json")
    cfg = json.loads(pooling.read_text())
    cfg = {k: (k == "pooling_mode_cls_token") if k.startswith("pooling_mode_") and isinstance(v, bool) else v
           for k, v in cfg.items()}
    pooling.write_text(json.dumps(cfg))
    assert model_fingerprint(load_model(copied)) != model_fingerprint(load_model(model_path))
