"""Training for a handful of steps on a real model: the folder loads, LoRA saves, resume works."""

from __future__ import annotations

import json

import pytest

from ragtune.errors import ConfigError
from ragtune.train import LoraSettings, TrainConfig, train

FAST = dict(batch_size=8, max_seq_length=64, save_steps=2, precision="fp32", learning_rate=5e-5)


def _stop_at(step: int):
    """A callback that interrupts training after ``step``, as a kill would."""
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == step:
                raise KeyboardInterrupt("simulated interruption")

    return StopAt()


def test_full_finetune_writes_a_loadable_model(tmp_path, tiny_pairs, st_model):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "model"
    res = train(tiny_pairs, out, TrainConfig(max_steps=3, **FAST))
    assert res.steps == 3 and res.dims == [384, 192, 96, 64]
    tuned = SentenceTransformer(str(out))
    a = tuned.encode(["night tram interval"], normalize_embeddings=True)
    b = st_model.encode(["night tram interval"], normalize_embeddings=True)
    assert a.shape == (1, 384)
    assert not np.allclose(a, b, atol=1e-4)  # the weights moved
    card = json.loads((out / "ragtune.json").read_text())
    assert card["result"]["steps"] == 3 and card["data"]["pairs"] == len(tiny_pairs)
    assert not (tmp_path / "model.checkpoints").exists()  # cleaned after success


def test_lora_adapter_round_trip(tmp_path, tiny_pairs):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "lora"
    res = train(tiny_pairs, out, TrainConfig(max_steps=2, lora=LoraSettings(rank=4, alpha=8), **FAST))
    assert res.trainable_params < res.total_params / 20
    assert (out / "adapter_config.json").exists()
    model = SentenceTransformer(str(out))
    assert model.encode(["depot"]).shape == (1, 384)


def test_a_lora_adapter_has_its_own_fingerprint_and_never_reuses_its_bases_index(tmp_path, tiny_pairs, tiny_corpus,
                                                                                  st_model, capsys):
    """Issue 28: a LoRA adapter's fingerprint differs from its base's, so `ragtune index --model LORA_DIR` on a
    collection the base built refuses (naming --replace) and with --replace re-encodes every chunk, never "0 encoded"."""
    import re

    from ragtune.encoders.loading import load_model, model_fingerprint
    from tests.helpers import run_inprocess

    out = tmp_path / "lora"
    train(tiny_pairs, out, TrainConfig(max_steps=2, lora=LoraSettings(rank=4, alpha=8), interpolate="off", **FAST))
    assert model_fingerprint(load_model(out)) != model_fingerprint(st_model)

    def index(model: str, *extra: str) -> tuple[int, str, str]:
        return run_inprocess(capsys, "index", str(tiny_corpus), "--model", model, "--store", str(tmp_path / "q"),
                             "--collection", "c", *extra)

    code, stdout, err = index("default")
    assert code == 0, err
    points = int(re.search(r"(\d+) chunks encoded", stdout).group(1))
    assert points > 0
    code, stdout, err = index(str(out))
    assert code == 1 and "holds vectors of model" in err and "--replace" in err, err
    code, stdout, err = index(str(out), "--replace")
    assert code == 0, err
    assert f"{points} chunks encoded, 0 kept" in stdout and "replaced 'c'" in stdout, stdout


@pytest.mark.parametrize("lora", [LoraSettings(method="ia3", learning_rate=0.05), LoraSettings(rank=4, plus_ratio=16)])
def test_ia3_and_lora_plus_save_adapters_that_load(tmp_path, tiny_pairs, st_model, lora):
    """(IA)3 (the stand-in for bottleneck adapters) and LoRA+ train, save, and load as sentence-transformers folders."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from ragtune.encoders.encoder import Encoder

    out = tmp_path / "adapter"
    res = train(tiny_pairs, out, TrainConfig(max_steps=3, lora=lora, interpolate="off", **FAST))
    assert 0 < res.trainable_params < res.total_params / 20
    peft_type = json.loads((out / "adapter_config.json").read_text())["peft_type"]
    assert peft_type == ("IA3" if lora.method == "ia3" else "LORA")
    texts = ["night tram interval", "depot staff"]
    loaded = SentenceTransformer(str(out)).encode(texts, normalize_embeddings=True)
    base = st_model.encode(texts, normalize_embeddings=True)
    assert not np.allclose(loaded, base, atol=1e-4)  # the adapter was loaded, and it moved
    np.testing.assert_allclose(Encoder(str(out)).encode_queries(texts), loaded, atol=1e-5)


def test_interrupted_training_resumes_from_checkpoint(tmp_path, tiny_pairs):
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    cfg = TrainConfig(max_steps=4, **FAST)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_pairs, out, cfg, checkpoint_dir=ckpt, callbacks=[_stop_at(3)])
    assert (ckpt / "checkpoint-2").exists() and not out.exists()
    res = train(tiny_pairs, out, cfg, checkpoint_dir=ckpt)
    assert res.resumed_from and res.resumed_from.endswith("checkpoint-2")
    assert res.steps == 4 and out.exists()


def test_checkpoint_cut_off_mid_write_is_not_resumed_from(tmp_path, tiny_pairs):
    """A kill while checkpoint-4 is written leaves it without trainer_state.json: resume from checkpoint-2."""
    import shutil

    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    cfg = TrainConfig(max_steps=6, **FAST)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_pairs, out, cfg, checkpoint_dir=ckpt, callbacks=[_stop_at(5)])
    (ckpt / "checkpoint-4" / "trainer_state.json").unlink()  # as if killed before the state was written
    shutil.copytree(ckpt / "checkpoint-2", ckpt / "checkpoint-3")
    (ckpt / "checkpoint-3" / "trainer_state.json").write_text('{"global_ste')  # cut mid-JSON
    res = train(tiny_pairs, out, cfg, checkpoint_dir=ckpt)
    assert res.resumed_from and res.resumed_from.endswith("checkpoint-2")
    assert res.steps == 6 and out.exists()


def test_changed_config_does_not_resume_a_stale_checkpoint(tmp_path, tiny_pairs):
    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-2").mkdir(parents=True)
    (ckpt / "ragtune_fingerprint.json").write_text('{"fingerprint": "other"}')
    res = train(tiny_pairs, tmp_path / "m", TrainConfig(max_steps=1, **FAST), checkpoint_dir=ckpt)
    assert res.resumed_from is None


def test_validation_pairs_are_not_trained_on(tmp_path, tiny_pairs):
    from dataclasses import replace

    marked = [replace(p, split="val" if i % 2 else "train") for i, p in enumerate(tiny_pairs)]
    res = train(marked, tmp_path / "m", TrainConfig(max_steps=1, **FAST))
    assert res.train_pairs == len(tiny_pairs) // 2 + len(tiny_pairs) % 2


def test_config_errors(tiny_pairs, tmp_path):
    with pytest.raises(ConfigError, match="loss"):
        TrainConfig(loss="nope")
    with pytest.raises(ConfigError, match="exceed"):
        TrainConfig(matryoshka_dims=(512,)).dims_for(384)
    with pytest.raises(ConfigError, match="negatives"):
        train(tiny_pairs, tmp_path / "m", TrainConfig(loss="triplet", max_steps=1, **FAST))


def test_query_adapter_keeps_documents_and_index_valid(tmp_path, tiny_pairs, st_model, qdrant_memory, tiny_chunks):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from ragtune.encoders.encoder import Encoder
    from ragtune.index.chunk_index import model_fingerprint, open_for_model
    from ragtune.train import AdapterSettings

    out = tmp_path / "qa"
    res = train(tiny_pairs, out, TrainConfig(query_adapter=AdapterSettings(epochs=5), **FAST))
    assert res.trainable_params == 384 * 384 + 384
    tuned = SentenceTransformer(str(out))  # plain sentence-transformers restores the Router
    docs = ["The Eastfield depot maintains the fleet."]
    assert np.allclose(tuned.encode_document(docs), st_model.encode(docs, normalize_embeddings=True), atol=1e-5)
    assert not np.allclose(tuned.encode_query(docs), st_model.encode(docs, normalize_embeddings=True), atol=1e-4)
    # an index built with the base model opens with the adapter model: no re-embedding
    open_for_model(qdrant_memory, "c", st_model, "base").upsert(tiny_chunks, Encoder(st_model))
    assert model_fingerprint(tuned) == model_fingerprint(st_model)
    idx = open_for_model(qdrant_memory, "c", tuned, str(out))
    hit = idx.search(Encoder(tuned).encode_queries(["Which depot maintains the trams?"])[0], top_k=1)[0]
    assert "Eastfield" in hit.text


def test_query_adapter_honours_max_steps(tmp_path, tiny_pairs, capsys):
    """Issue 28: `ragtune train --query-adapter --max-steps 2` trains 2 steps (it trained 40 epochs' worth)."""
    from ragtune.pairs import save_pairs
    from tests.helpers import run_inprocess

    data = tmp_path / "pairs.jsonl"
    save_pairs(data, tiny_pairs)
    out = tmp_path / "qa"
    code, stdout, err = run_inprocess(capsys, "train", str(data), "--out", str(out), "--query-adapter", "--max-steps", "2",
                                      "--batch-size", "4")
    assert code == 0, err
    assert stdout.startswith("trained 2 steps"), stdout
    assert json.loads((out / "ragtune.json").read_text())["result"]["steps"] == 2


def _with_val(pairs, every=4):
    from dataclasses import replace

    return [replace(p, split="val" if i % every == 0 else "train") for i, p in enumerate(pairs)]


def test_interpolation_chooses_a_mix_on_validation(tmp_path, tiny_pairs):
    """WiSE-FT: every mix is scored on the held-out pairs and the choice is recorded in the card."""
    out = tmp_path / "wise"
    res = train(_with_val(tiny_pairs), out, TrainConfig(max_steps=2, interpolate=True, **FAST))
    mix = res.interpolation
    assert mix is not None and set(mix["val_ndcg@10"]) == {"0.5", "0.7", "0.85", "1.0"}
    best = max(mix["val_ndcg@10"].values())
    assert mix["val_ndcg@10"][str(mix["alpha"])] >= best - 0.005  # within tolerance of the best
    assert all(a >= mix["alpha"] for a in map(float, mix["val_ndcg@10"]) if mix["val_ndcg@10"][str(a)] >= best - 0.005)
    card = json.loads((out / "ragtune.json").read_text())
    assert card["result"]["interpolation"]["alpha"] == mix["alpha"]


def test_without_validation_pairs_the_default_mix_is_half_way(tmp_path, tiny_pairs, st_model):
    """interpolate="auto" with no validation pairs mixes 0.5 tuned / 0.5 base: every shared weight lies
    exactly half-way between the unmixed model (same seed, interpolate="off") and the base."""
    from sentence_transformers import SentenceTransformer

    off = train(tiny_pairs, tmp_path / "off", TrainConfig(max_steps=2, interpolate="off", **FAST))
    auto = train(tiny_pairs, tmp_path / "auto", TrainConfig(max_steps=2, **FAST))
    assert off.interpolation is None
    assert auto.interpolation["alpha"] == 0.5 and auto.interpolation["chosen_by"].startswith("default")
    tuned = SentenceTransformer(str(tmp_path / "off")).state_dict()
    mixed = SentenceTransformer(str(tmp_path / "auto")).state_dict()
    name = "0.model.encoder.layer.3.attention.self.query.weight"
    base = st_model.state_dict()[name]
    assert not (tuned[name] - base).abs().max() < 1e-6  # training moved it
    assert (mixed[name] - (tuned[name] + base) / 2).abs().max() < 1e-5
    from ragtune.train.card import render_card

    card = json.loads((tmp_path / "auto" / "ragtune.json").read_text())
    assert "0.5 tuned / 0.50 base" in render_card(card)


def test_interpolate_setting_is_checked():
    assert TrainConfig(interpolate=True).interpolate == "auto"
    assert TrainConfig(interpolate=False).interpolate == "off"
    assert TrainConfig(interpolate="0.7").interpolate == 0.7
    assert TrainConfig(interpolate=1).interpolate == "off"
    from ragtune.train.card import render_card

    kept = render_card({"result": {"interpolation": {"alpha": 1.0, "chosen_by": "validation"}}})
    assert "tuned weights scored best and were kept" in kept and "0.00 base" not in kept
    for bad in (1.5, 0, "sometimes"):
        with pytest.raises(ConfigError, match="interpolate"):
            TrainConfig(interpolate=bad)


def test_lora_has_its_own_learning_rate():
    """Adapters start at zero and want ~10x the full-model rate: LoRA's rate is its own setting."""
    assert TrainConfig().effective_learning_rate == 1e-4
    assert TrainConfig(lora=True).effective_learning_rate == 1e-3
    assert TrainConfig(lora={"rank": 4, "learning_rate": 5e-4}, learning_rate=2e-5).effective_learning_rate == 5e-4
    with pytest.raises(ConfigError, match="lora learning_rate"):
        LoraSettings(learning_rate=2.0)


def test_learning_rate_follows_the_model_width_unless_given():
    """A wider base (all-mpnet-base-v2: 768) takes a smaller default step than the 384-wide MiniLM."""
    cfg = TrainConfig()
    assert cfg.learning_rate is None
    assert cfg.for_width(384).learning_rate == 1e-4
    assert cfg.for_width(768).learning_rate == 5e-5
    assert cfg.for_width(1024).effective_learning_rate == pytest.approx(3.75e-5)
    assert TrainConfig(learning_rate=2e-5).for_width(768).learning_rate == 2e-5
    assert TrainConfig(lora=True).for_width(768).effective_learning_rate == 1e-3


def test_early_stopping_keeps_the_best_checkpoint(tmp_path, tiny_pairs):
    res = train(_with_val(tiny_pairs), tmp_path / "es", TrainConfig(max_steps=8, early_stopping_patience=1, **FAST))
    assert res.best_step is not None and res.best_step % FAST["save_steps"] == 0
    assert res.steps <= 8


def test_early_stopping_without_validation_pairs_names_the_fix(tmp_path, tiny_pairs):
    with pytest.raises(ConfigError, match="val_fraction"):
        train(tiny_pairs, tmp_path / "x", TrainConfig(max_steps=2, early_stopping_patience=1, **FAST))


def test_bf16_on_a_cpu_without_it_is_warned_about(monkeypatch, caplog):
    """Emulated bf16 was measured 9x slower than fp32; asking for it there says so."""
    import logging

    import torch

    from ragtune.train import hardware

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="ragtune.train.hardware"):
        assert hardware.resolve_precision("auto") == "fp32"
        assert not caplog.records
        assert hardware.resolve_precision("bf16") == "bf16"
    assert "without AVX512-BF16" in caplog.text
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    assert hardware.resolve_precision("auto") == "bf16"


def test_loss_names_and_choices_come_from_one_place():
    """The loss registry feeds the config's check and the column sets; choice errors read as before."""
    from ragtune.train import trainer
    from ragtune.train.config import LOSSES
    from ragtune.train.losses import LABELLED, NEEDS_NEGATIVES, PASSAGE_GROUPED, REGISTRY

    assert tuple(REGISTRY) == LOSSES
    assert set(NEEDS_NEGATIVES) == {"triplet"} and set(LABELLED) == {"cosine", "contrastive"}
    assert set(PASSAGE_GROUPED) == {"mnrl", "mnrl-symmetric"}
    assert all(callable(getattr(trainer, name)) for name in trainer.__all__)
    with pytest.raises(ConfigError, match="choose one of mnrl, mnrl-symmetric, cached-mnrl, triplet"):
        TrainConfig(loss="nope")
    with pytest.raises(ConfigError, match=r"rotate='x': choose 'pca' or 'none'$"):
        TrainConfig(rotate="x")
    with pytest.raises(ConfigError, match=r"batching='x': choose 'passage' or 'no-duplicates'$"):
        TrainConfig(batching="x")
    with pytest.raises(ConfigError, match=r"precision='x': choose auto, fp32, bf16 or fp16$"):
        TrainConfig(precision="x")
