"""Passage-grouped batches: each passage once per batch with all its queries; the loss equals MNRL's
objective with duplicate candidates merged."""

from __future__ import annotations

import pytest
import torch

from ragtune.train.passage_batches import (
    PassageGroupedBatchSampler,
    PassageGroupedMNRLoss,
    unique_rows,
)


def _dataset(positives):
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [f"q{i}" for i in range(len(positives))], "positive": positives})


def test_sampler_keeps_a_passage_queries_together_and_counts_passages():
    pos = ["a", "b", "a", "c", "d", "b", "a", "e"]  # 5 distinct passages
    s = PassageGroupedBatchSampler(_dataset(pos), batch_size=2, drop_last=False, seed=3)
    batches = list(s)
    assert len(batches) == len(s) == 3
    assert sorted(i for b in batches for i in b) == list(range(len(pos)))  # every pair exactly once
    for b in batches:
        texts = [pos[i] for i in b]
        assert len(set(texts)) <= 2  # batch_size counts distinct passages
        for t in set(texts):  # all queries of a passage sit in the same batch
            assert texts.count(t) == pos.count(t)
    s.set_epoch(1)
    assert list(s) != batches or len(batches) == 1  # reshuffled per epoch
    dropped = PassageGroupedBatchSampler(_dataset(pos), batch_size=2, drop_last=True, seed=3)
    assert len(dropped) == len(list(dropped)) == 2


def test_unique_rows_merges_identical_token_rows_across_columns():
    ids1 = torch.tensor([[101, 5, 6, 102, 0], [101, 7, 102, 0, 0], [101, 5, 6, 102, 0]])
    ids2 = torch.tensor([[101, 7, 102], [101, 9, 102], [101, 9, 102]])
    cols = [
        {"input_ids": ids1, "attention_mask": (ids1 != 0).long()},
        {"input_ids": ids2, "attention_mask": (ids2 != 0).long()},
    ]
    merged, inverse = unique_rows(cols)
    assert inverse == [[0, 1, 0], [1, 2, 2]]
    assert merged["input_ids"].shape == (3, 4)
    assert merged["input_ids"][2].tolist() == [101, 9, 102, 0]


def _loss(loss, model, queries, passages):
    """``loss`` over one batch of (query, passage) columns, in eval mode, without gradients."""
    model.eval()
    with torch.no_grad():
        return loss([dict(model.preprocess(queries)), dict(model.preprocess(passages))], None)


def test_grouped_loss_equals_mnrl_when_passages_are_distinct(st_model):
    """With no shared passages the grouped loss is exactly sentence-transformers' MNRL."""
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    q = ["night tram interval", "where to buy tickets", "bike on the ferry"]
    p = ["Trams run every 30 minutes at night.", "Tickets are sold at kiosks.", "Bikes ride free on ferries."]
    ours = _loss(PassageGroupedMNRLoss(st_model), st_model, q, p)
    ref = _loss(MultipleNegativesRankingLoss(st_model), st_model, q, p)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-6)
    # a repeated passage is one candidate: two queries of one passage no longer push each other away
    grouped = _loss(PassageGroupedMNRLoss(st_model), st_model, q[:2], [p[0], p[0]])
    plain = _loss(MultipleNegativesRankingLoss(st_model), st_model, q[:2], [p[0], p[0]])
    assert grouped.item() == pytest.approx(0.0, abs=1e-6) and plain.item() > 0.5


def test_embedding_by_length_slices_matches_one_call(st_model):
    texts = ["a", "a much longer sentence about trams and ferries at night " * 3, "bikes", "ticket kiosks open at six"] * 5
    feats = st_model.preprocess(texts)
    from ragtune.train.passage_batches import embed_by_length

    st_model.eval()
    with torch.no_grad():
        whole = st_model(dict(feats))["sentence_embedding"]
        sliced = embed_by_length(st_model, dict(feats), rows=3)
    assert torch.allclose(whole, sliced, atol=1e-5)


def test_symmetric_grouped_loss_counts_all_queries_of_a_passage(st_model):
    q = ["night tram interval", "when do trams run at night", "where to buy tickets"]
    p = ["Trams run every 30 minutes at night.", "Trams run every 30 minutes at night.", "Tickets are sold at kiosks."]
    one_way = _loss(PassageGroupedMNRLoss(st_model), st_model, q, p)
    both = _loss(PassageGroupedMNRLoss(st_model, symmetric=True), st_model, q, p)
    assert torch.isfinite(both) and both.item() != pytest.approx(one_way.item())
