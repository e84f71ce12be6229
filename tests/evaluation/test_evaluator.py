"""Evaluation: loaders, exact search, ranx metrics vs sentence-transformers' evaluator, bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragtune.errors import InputError
from ragtune.evaluation import (
    RetrievalDataset,
    RetrievalEvaluator,
    compute_metrics,
    load_eval_dataset,
    paired_bootstrap,
)
from ragtune.index.exact import EncodedCorpus, exact_search
from tests.helpers import shared_data


@pytest.fixture(scope="module")
def tiny_dataset(tiny_chunks):
    """Hand-written questions over the tiny corpus; relevant = chunks holding the answer."""
    keys = {
        "How often does the night tram run?": "every 30 minutes",
        "What does a monthly pass cost?": "58 euros",
        "Where is the tram fleet maintained?": "Eastfield depot",
        "Can I bring my bike on the tram?": "Bicycles can be taken",
        "Who drove the first tram at the opening?": "mayor drove the first tram",
        "How long were items in lost property kept?": "30 days",
    }
    queries, relevant = {}, {}
    for i, (q, needle) in enumerate(keys.items()):
        queries[f"q{i}"] = q
        relevant[f"q{i}"] = {c.id: 1 for c in tiny_chunks if needle in c.text}
    return RetrievalDataset("tiny", queries, {c.id: c.text for c in tiny_chunks}, relevant)


def test_metrics_agree_with_sentence_transformers(tiny_dataset, st_model):
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    ours = RetrievalEvaluator(tiny_dataset)(st_model, "base").metrics["384"]
    st = InformationRetrievalEvaluator(
        tiny_dataset.queries,
        tiny_dataset.corpus,
        {q: set(r) for q, r in tiny_dataset.relevant.items()},
        accuracy_at_k=[1, 5, 10],
        ndcg_at_k=[10],
        mrr_at_k=[10],
        precision_recall_at_k=[10],
        map_at_k=[100],
        show_progress_bar=False,
    )(st_model)
    assert ours["hit@1"] == pytest.approx(st["cosine_accuracy@1"], abs=1e-3)
    assert ours["hit@5"] == pytest.approx(st["cosine_accuracy@5"], abs=1e-3)
    assert ours["ndcg@10"] == pytest.approx(st["cosine_ndcg@10"], abs=1e-3)
    assert ours["mrr@10"] == pytest.approx(st["cosine_mrr@10"], abs=1e-3)
    assert ours["recall@10"] == pytest.approx(st["cosine_recall@10"], abs=1e-3)
    assert ours["hit@5"] >= 0.8  # the base model answers these easy questions


def test_matryoshka_dims_and_long_mode(tiny_dataset, st_model):
    res = RetrievalEvaluator(tiny_dataset, dims=[384, 64], long_chunks=True)(st_model, "base+long")
    assert set(res.metrics) == {"384", "64"}
    assert res.seconds["corpus_units"] >= len(tiny_dataset.corpus)
    assert all(0.0 <= v <= 1.0 for v in res.metrics["64"].values())


def test_known_metric_values():
    rel = {"a": {"d1": 1}, "b": {"d2": 1}}
    results = {"a": [("d1", 0.9), ("d3", 0.5)], "b": [("d1", 0.8), ("d3", 0.7), ("d2", 0.6)]}
    means, per = compute_metrics(rel, results, ["hit@1", "hit@5", "mrr@10", "ndcg@10"])
    assert means["hit@1"] == 0.5 and means["hit@5"] == 1.0
    assert means["mrr@10"] == pytest.approx((1 + 1 / 3) / 2)
    assert per["ndcg@10"][1] == pytest.approx(1 / np.log2(4))


def test_exact_search_by_best_window():
    # doc0 has one window matching the query exactly; doc1 is mediocre in both windows
    vecs = np.array([[0, 1], [1, 0], [0.6, 0.8], [0.6, 0.8]], dtype=np.float32)
    corpus = EncodedCorpus(ids=["doc0", "doc1"], vectors=vecs, owner=np.array([0, 0, 1, 1]))
    hits = exact_search(np.array([[1, 0]], dtype=np.float32), corpus, top_k=2)
    assert [h[0] for h in hits[0]] == ["doc0", "doc1"]
    assert hits[0][0][1] == pytest.approx(1.0)


def test_paired_bootstrap_detects_a_real_difference():
    rng = np.random.default_rng(1)
    base = rng.random(300)
    better = paired_bootstrap(base + 0.1, base)
    assert better["ci_low"] > 0 and better["p_value"] < 0.01
    same = paired_bootstrap(base + rng.normal(0, 0.01, 300), base)
    assert same["ci_low"] < 0 < same["ci_high"]


def test_loaders_and_shape_errors(tmp_path):
    good = tmp_path / "ds.json"
    good.write_text(json.dumps({"queries": {"q": "x"}, "corpus": {"d": "t"}, "relevant_docs": {"q": ["d"]}, "mode": "text"}))
    assert len(load_eval_dataset(good)) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"queries": ["not", "a", "dict"]}))
    with pytest.raises(InputError, match=r"bad.json"):
        load_eval_dataset(bad)
    dangling = tmp_path / "dangling.json"
    dangling.write_text(json.dumps({"queries": {"q": "x"}, "corpus": {"d": "t"}, "relevant_docs": {"q": ["zz"]}}))
    with pytest.raises(InputError, match="zz"):
        load_eval_dataset(dangling)
    with pytest.raises(InputError, match="not a BEIR folder"):
        load_eval_dataset(tmp_path)
    with pytest.raises(InputError, match="unknown dataset format"):
        (tmp_path / "x.csv").write_text("a,b")
        load_eval_dataset(tmp_path / "x.csv")


def test_beir_loader_on_dbpedia():
    ds = load_eval_dataset(shared_data("dbpedia-5k"))
    assert ds.kind == "beir" and len(ds.corpus) == 5000
    assert 30 <= len(ds) <= 50  # queries with at least one relevant (grade > 0) entity
