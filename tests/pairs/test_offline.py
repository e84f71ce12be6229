"""The offline generator, filters, split, and the pair file formats."""

from __future__ import annotations

import json

import pytest

from ragtune.encoders.windows import WindowSpec
from ragtune.errors import InputError
from ragtune.pairs import (
    GenerationConfig,
    Pair,
    generate_pairs,
    load_pairs,
    pairs_to_llamaindex,
    save_pairs,
)
from ragtune.pairs.filters import DuplicateFilter
from ragtune.pairs.split import split_pairs
from ragtune.pairs.text import normalize_query


@pytest.fixture(scope="module")
def generated(tiny_chunks, st_model):
    return generate_pairs(tiny_chunks, st_model.tokenizer, WindowSpec(60, 45), GenerationConfig(val_fraction=0.2))


def test_pairs_point_at_real_chunks_and_windows(generated, tiny_chunks):
    ids = {c.id: c for c in tiny_chunks}
    assert len(generated.pairs) >= 15
    for p in generated.pairs:
        assert p.positive_id in ids
        a, b = p.window
        chunk_text = ids[p.positive_id].text
        window = chunk_text[a:b]
        # the positive is the window (or the window minus the inverse-cloze sentence)
        assert p.positive == window or (p.source == "offline:ict" and p.query not in p.positive)


def test_no_duplicate_queries(generated):
    norms = [normalize_query(p.query) for p in generated.pairs]
    assert len(norms) == len(set(norms))


def test_several_query_kinds(generated):
    kinds = {p.source for p in generated.pairs}
    assert {"offline:heading", "offline:question", "offline:keyphrase", "offline:ict"} <= kinds
    headings = {p.query for p in generated.pairs if p.source == "offline:heading"}
    assert "Night service" in headings


def test_split_never_shares_a_document(generated):
    train_docs = {p.doc_id for p in generated.pairs if p.split == "train"}
    val_docs = {p.doc_id for p in generated.pairs if p.split == "val"}
    assert train_docs and val_docs and not train_docs & val_docs


def test_split_by_chunk_when_few_documents():
    pairs = [Pair(f"q{i}", "p", f"c{i % 10}", doc_id="onlydoc") for i in range(40)]
    out = split_pairs(pairs, 0.2, by="doc", min_groups=5)
    train_c = {p.positive_id for p in out if p.split == "train"}
    val_c = {p.positive_id for p in out if p.split == "val"}
    assert val_c and not train_c & val_c


def test_max_pairs_spreads_over_chunks(tiny_chunks, st_model):
    res = generate_pairs(tiny_chunks, st_model.tokenizer, WindowSpec(60, 45), GenerationConfig(max_pairs=10))
    assert len(res.pairs) == 10
    assert len({p.positive_id for p in res.pairs}) >= min(10, len(tiny_chunks)) - 1
    assert res.dropped["max_pairs"] > 0


def test_duplicate_filter_drops_reordered_queries():
    pairs = [Pair("battery warranty years", "a", "1"), Pair("Years warranty battery?", "b", "2"), Pair("other", "c", "3")]
    assert [p.positive_id for p in DuplicateFilter()(pairs)] == ["1", "3"]


def test_jsonl_roundtrip(tmp_path, generated):
    path = tmp_path / "pairs.jsonl"
    save_pairs(path, generated.pairs)
    back = load_pairs(path)
    assert [p.to_dict() for p in back] == [p.to_dict() for p in generated.pairs]


def test_llamaindex_roundtrip(tmp_path, generated, tiny_chunks):
    path = tmp_path / "ds.json"
    pairs_to_llamaindex(generated.pairs, {c.id: c.text for c in tiny_chunks}, path)
    # the EmbeddingQAFinetuneDataset shape (the class now lives in the deprecated
    # llama-index-finetuning package, so the file is checked field by field)
    data = json.loads(path.read_text())
    assert set(data) == {"queries", "corpus", "relevant_docs", "mode"} and data["mode"] == "text"
    assert len(data["queries"]) == len(generated.pairs)
    assert all(ids[0] in data["corpus"] for ids in data["relevant_docs"].values())
    back = load_pairs(path)
    assert {p.query for p in back} == {p.query for p in generated.pairs}


def test_bad_pair_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "positive": "p"}) + "\n")
    with pytest.raises(InputError, match="positive_id"):
        load_pairs(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"questions": []}))
    with pytest.raises(InputError, match=r"wrong.json.*queries"):
        load_pairs(wrong)
    with pytest.raises(InputError, match=r"missing.jsonl"):
        load_pairs(tmp_path / "missing.jsonl")


def test_round_trip_negatives_and_chunk_positives(tiny_chunks, st_model):
    from ragtune.encoders.encoder import Encoder

    enc = Encoder(st_model)
    spec = WindowSpec(60, 45)
    cfg = GenerationConfig(round_trip="bm25", round_trip_k=1, negatives=1, positive="both", val_fraction=0.0)
    res = generate_pairs(tiny_chunks, st_model.tokenizer, spec, cfg, encoder=enc)
    from ragtune.pairs.filters import RoundTripFilter

    assert "round_trip" in res.dropped
    window_pairs = [p for p in res.pairs if p.window is not None]
    assert all(RoundTripFilter(tiny_chunks, retriever="bm25", k=1).consistent(window_pairs))
    assert res.mining["with_negatives"] > 0
    texts = {c.id: c.text for c in tiny_chunks}
    whole = [p for p in res.pairs if p.positive == texts[p.positive_id]]
    assert whole and all(p.window is None for p in whole)
    for p in res.pairs:
        for n in p.negatives:
            assert n["id"] != p.positive_id
    with pytest.raises(Exception, match="positive="):
        generate_pairs(tiny_chunks, st_model.tokenizer, spec, GenerationConfig(positive="nope"))
