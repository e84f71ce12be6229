"""Token windows of long chunks: spans cover the text, the tail is never dropped."""

from __future__ import annotations

import itertools

import pytest

from ragtune.encoders.windows import WindowSpec, batch_window_spans
from ragtune.errors import ConfigError


def test_short_text_is_one_window(st_model):
    assert batch_window_spans(["a short text"], st_model.tokenizer, WindowSpec(32, 24)) == [[(0, 12)]]


def test_windows_cover_long_text_and_end_at_its_end(st_model):
    text = " ".join(f"word{i}" for i in range(300))
    spec = WindowSpec(size=50, stride=40)
    [spans] = batch_window_spans([text], st_model.tokenizer, spec)
    assert len(spans) > 5
    assert spans[0][0] == 0
    assert spans[-1][1] == len(text)
    for (_, a1), (b0, _) in itertools.pairwise(spans):
        assert b0 < a1  # consecutive windows overlap
    n_tokens = [len(st_model.tokenizer(text[a:b], add_special_tokens=False)["input_ids"]) for a, b in spans]
    assert max(n_tokens) <= spec.size + 2


def test_batch_matches_one_text_at_a_time(st_model):
    texts = ["short", " ".join(["longer text"] * 100)]
    spec = WindowSpec(40, 30)
    assert batch_window_spans(texts, st_model.tokenizer, spec) == [
        batch_window_spans([t], st_model.tokenizer, spec)[0] for t in texts
    ]


def test_spec_for_model_fits_the_model():
    spec = WindowSpec.for_model(256)
    assert spec.size == 250 and spec.stride < spec.size


def test_bad_spec():
    with pytest.raises(ConfigError):
        WindowSpec(size=50, stride=60)


def test_remembered_windows_are_encoded_once(st_model):
    """The pipeline's tuned encoder indexes, then evaluates: the second pass encodes nothing new."""
    import numpy as np

    from ragtune.encoders.encoder import Encoder

    texts = ["short", " ".join(f"long text {i}" for i in range(200)), "another short one"]
    spec = WindowSpec(40, 30)
    plain = Encoder(st_model).encode_windows(texts, spec)
    enc = Encoder(st_model, remember_windows=True)
    calls: list[int] = []
    forward = enc._forward
    enc._forward = lambda batch, *a: calls.append(len(batch)) or forward(batch, *a)
    first = enc.encode_windows(texts[1:2], spec)
    again = enc.encode_windows(texts, spec)  # one text remembered, two new
    assert sum(calls) == len(first.vectors) + 2
    np.testing.assert_allclose(again.vectors, plain.vectors, atol=1e-5)
    assert again.spans == plain.spans and list(again.owner) == list(plain.owner)
    calls.clear()
    enc.encode_windows(list(reversed(texts)), spec)
    enc.encode_windows(texts, WindowSpec(40, 40))  # other windows: encoded afresh
    assert sum(calls) == len(enc.encode_windows(texts, WindowSpec(40, 40)).vectors)
