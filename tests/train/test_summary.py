"""Chunk summaries: targets from a chunk's windows, the loss, and the stage that makes a plain read see the whole chunk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragtune.encoders.windows import WindowSpec, batch_window_spans
from ragtune.errors import ConfigError
from ragtune.train import TrainConfig, train
from ragtune.train.summary import SummarySettings, summary_loss, summary_targets

FAST = dict(batch_size=8, max_seq_length=64, save_steps=50, precision="fp32", learning_rate=5e-5)


@pytest.fixture(scope="module")
def long_chunks(tiny_chunks):
    """Three chunks of ~350-450 tokens: the tiny corpus's texts joined, so each needs 2+ windows of 250 tokens."""
    texts = [c.text for c in tiny_chunks]
    joined = " ".join(texts)
    words = joined.split()
    out = []
    for k in range(3):
        rotated = words[k * 37 :] + words[: k * 37]
        out.append(" ".join((rotated * 3)[:330]))
    return out


def test_targets_only_for_texts_longer_than_a_window(st_model, long_chunks):
    short = "The night tram runs every 30 minutes."
    targets = summary_targets(st_model, [short, *long_chunks, long_chunks[0]], plain_weight=0.5)
    assert set(targets) == set(long_chunks)  # the short text fits in one window; duplicates collapse
    text = long_chunks[1]
    spans = batch_window_spans([text], st_model.tokenizer, WindowSpec.for_model(st_model.max_seq_length))[0]
    assert len(spans) >= 2
    w = st_model.encode([text[a:b] for a, b in spans], normalize_embeddings=True)
    expected = 0.5 * w[0] + w.mean(axis=0)
    expected /= np.linalg.norm(expected)
    assert np.allclose(targets[text], expected, atol=1e-4)
    assert abs(np.linalg.norm(targets[text]) - 1) < 1e-5


def test_summary_loss_is_zero_at_the_target_at_every_dimension():
    import torch

    target = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    assert float(summary_loss(target.clone(), target, [16, 8, 4])) < 1e-6
    # agreeing on the first 8 coordinates only: the 8- and 4-dim terms are zero, the 16-dim one is not
    off = target.clone()
    off[:, 8:] = -off[:, 8:]
    full = float(summary_loss(off, target, [16]))
    assert full > 0.01
    assert float(summary_loss(off, target, [8, 4])) < 1e-6
    assert abs(float(summary_loss(off, target, [16, 8, 4])) - full / 3) < 1e-6


def test_stage_makes_a_plain_read_see_the_end_of_the_chunk(tmp_path, tiny_pairs, long_chunks):
    """Same seed and steps, with and without the stage: with it, each long chunk's plain vector moves
    towards the vector of its last window (text the truncated read never sees) and the card says so."""
    from sentence_transformers import SentenceTransformer

    from ragtune.train.card import render_card

    cfg = dict(max_steps=3, summary={"epochs": 3}, **FAST)
    off = train(tiny_pairs, tmp_path / "off", TrainConfig(summarize=False, **cfg), chunks=long_chunks)
    on = train(tiny_pairs, tmp_path / "on", TrainConfig(**cfg), chunks=long_chunks)
    assert off.summary is None
    s = on.summary
    assert s["chunks"] == 3 and s["epochs"] == 3 and s["distance_after"] < s["distance_before"]
    assert s["steps"] == 3  # 3 epochs of one batch (max_steps=3 leaves them whole)

    def closeness(folder):
        model = SentenceTransformer(str(folder))
        assert model.max_seq_length == 256  # the saved model reads what the base reads, not FAST's 64
        spans = batch_window_spans(long_chunks, model.tokenizer, WindowSpec.for_model(model.max_seq_length))
        tails = [t[sp[-1][0]:sp[-1][1]] for t, sp in zip(long_chunks, spans)]
        plain = model.encode(long_chunks, normalize_embeddings=True)
        tail = model.encode(tails, normalize_embeddings=True)
        return float((plain * tail).sum(axis=1).mean())

    assert closeness(tmp_path / "on") > closeness(tmp_path / "off")
    card = json.loads((tmp_path / "on" / "ragtune.json").read_text())
    assert card["result"]["summary"]["chunks"] == 3
    assert "Chunk summaries:** 3 long chunks" in render_card(card)


def test_max_steps_caps_the_stage_as_every_training_phase(model_path, long_chunks):
    """``--max-steps`` shortens a run in every phase: 3 epochs of one batch stop after 1 step."""
    from sentence_transformers import SentenceTransformer

    from ragtune.train.optim import param_groups
    from ragtune.train.summary import train_summaries

    model = SentenceTransformer(str(model_path))  # its own copy: the stage trains it in place
    record = train_summaries(model, long_chunks, [384], SummarySettings(epochs=3),
                             param_groups(model, TrainConfig(**FAST)), max_steps=1)
    assert record["chunks"] == 3 and record["steps"] == 1


def test_no_chunks_or_only_short_ones_skip_the_stage(tmp_path, tiny_pairs, tiny_chunks):
    res = train(tiny_pairs, tmp_path / "m", TrainConfig(max_steps=1, **FAST), chunks=[c.text for c in tiny_chunks])
    assert res.summary == {"chunks": 0, "skipped": "no chunk is longer than the model's window"}
    assert train(tiny_pairs, tmp_path / "n", TrainConfig(max_steps=1, **FAST)).summary is None


def test_summary_settings_are_checked():
    assert TrainConfig(summary={"epochs": 1}).summary == SummarySettings(epochs=1)
    for bad in ({"epochs": 0}, {"batch_size": 0}, {"plain_weight": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TrainConfig(summary=bad)
