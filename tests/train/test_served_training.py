"""Training further on served queries (``ragtune.train.served``): the run's settings become the
continuation's, adapters are refused with the fix, and the continuation moves the model toward the
served questions. Real parts: the bundled model, the tiny tram corpus's chunks as positives."""

from __future__ import annotations

import pytest

from ragtune.errors import ConfigError
from ragtune.pairs.schema import Pair
from ragtune.train import AdapterSettings, LoraSettings, TrainConfig
from ragtune.train.served import SERVED_EPOCHS, served_config, train_on_served


def test_the_continuation_starts_from_the_tuned_model_and_keeps_the_run_settings(tmp_path):
    run = TrainConfig(batch_size=16, learning_rate=3e-5, max_seq_length=96, max_steps=7, seed=5, epochs=1.0)
    cfg = served_config(run, tmp_path / "model")
    assert cfg.base == str(tmp_path / "model")
    # a rotated, summarised, interpolated model is not rotated, summarised or mixed back again
    assert (cfg.rotate, cfg.summarize, cfg.interpolate, cfg.early_stopping_patience) == ("none", False, "off", 0)
    assert cfg.epochs == SERVED_EPOCHS
    kept = ("batch_size", "learning_rate", "max_seq_length", "max_steps", "seed", "loss", "matryoshka_dims", "precision")
    assert {k: getattr(cfg, k) for k in kept} == {k: getattr(run, k) for k in kept}
    assert run.base is None and run.rotate == "pca"  # the run's own config is left as it was


@pytest.mark.parametrize(("config", "flag"), [
    (TrainConfig(lora=LoraSettings()), "--lora"),
    (TrainConfig(query_adapter=AdapterSettings()), "--query-adapter"),
])
def test_adapters_are_refused_with_the_fix(tmp_path, config, flag):
    with pytest.raises(ConfigError, match=flag) as err:
        served_config(config, tmp_path)
    assert "without --queries" in str(err.value)


def test_too_few_served_pairs_is_one_line(tmp_path, tiny_chunks):
    c = tiny_chunks[0]
    one = [Pair(query="what does a pass cost", positive=c.text, positive_id=c.id, source="served")]
    with pytest.raises(ConfigError, match="at least 2"):
        train_on_served(tmp_path / "model", one, tmp_path / "out", TrainConfig())


def test_training_on_served_pairs_brings_their_questions_closer_to_their_chunks(tmp_path, tiny_chunks, st_model):
    """A few steps on served pairs raise each question's similarity to its labelled chunk."""
    from sentence_transformers import SentenceTransformer

    src = tmp_path / "model"
    st_model.save(str(src))
    questions = ["ticket machine coins", "bicycles on board rules", "wheel workshop location", "night service hours"]
    pairs = [Pair(query=q, positive=c.text, positive_id=c.id, source="served")
             for q, c in zip(questions, tiny_chunks, strict=False)]

    def sims(model):
        q = model.encode([p.query for p in pairs], normalize_embeddings=True)
        d = model.encode([p.positive for p in pairs], normalize_embeddings=True)
        return (q * d).sum(axis=1)

    before = sims(st_model)
    cfg = TrainConfig(batch_size=4, max_steps=4, learning_rate=1e-4, max_seq_length=64, matryoshka=False)
    result = train_on_served(src, pairs, tmp_path / "out", cfg, checkpoint_dir=tmp_path / "ckpt")
    assert result.steps == 4 and result.train_pairs == len(pairs)
    after = sims(SentenceTransformer(str(tmp_path / "out"), device="cpu"))
    assert after.mean() > before.mean() + 0.01, (before, after)


def test_run_with_queries_and_an_adapter_stops_before_any_stage(tmp_path, capsys, tiny_corpus):
    """`ragtune run --queries DIR --lora-r 8`: refused up front (not after the synthetic training), no run written."""
    from tests.helpers import run_inprocess

    logs = tmp_path / "logs"
    logs.mkdir()
    work = tmp_path / "run"
    code, _, err = run_inprocess(capsys, "run", str(tiny_corpus), "--workdir", str(work), "--queries", str(logs),
                                 "--lora-r", "8")
    assert code != 0 and "--lora" in err and "without --queries" in err
    assert not (work / "chunks.jsonl").exists() and not (work / "model").exists()
