"""The Qdrant facade: stable upserts, best-window search, model mismatch, on-disk persistence."""

from __future__ import annotations

import pytest

from ragtune.corpus.reader import Chunk
from ragtune.encoders.encoder import Encoder
from ragtune.errors import IndexMismatchError
from ragtune.index.chunk_index import (
    ChunkIndex,
    connect,
    model_fingerprint,
    open_for_model,
)


def test_reindexing_keeps_the_point_count(qdrant_memory, tiny_chunks, st_model):
    idx = open_for_model(qdrant_memory, "c", st_model, "base")
    enc = Encoder(st_model)
    idx.upsert(tiny_chunks, enc)
    n = idx.count()
    idx.upsert(tiny_chunks, enc)
    assert n == len(tiny_chunks) == idx.count()


def test_search_finds_the_answer(qdrant_memory, tiny_chunks, st_model):
    idx = open_for_model(qdrant_memory, "c", st_model, "base")
    enc = Encoder(st_model)
    idx.upsert(tiny_chunks, enc)
    hits = idx.search(enc.encode_queries(["Which depot maintains the trams?"])[0], top_k=3)
    assert "Eastfield depot" in hits[0].text
    assert hits[0].metadata["source"] == "depot.html"


def test_windows_find_text_past_the_first_window(qdrant_memory, st_model):
    """A fact at the end of a long chunk is missed by the plain vector, found by its window."""
    filler = " ".join(
        f"Paragraph {i} describes the general history of municipal tram networks in broad terms." for i in range(40)
    )
    long_chunk = Chunk("0d2cbd87-9ac4-5ec0-9f4a-4a8c8a5e0e01", filler + " The secret depot password is pelican-42.", "d1", "long.txt")
    others = [
        Chunk(f"0d2cbd87-9ac4-5ec0-9f4a-4a8c8a5e0e{i:02d}", f"Short note {i} about tram timetables and ticket prices.", f"d{i}", f"n{i}.txt")
        for i in range(2, 8)
    ]
    idx = open_for_model(qdrant_memory, "w", st_model, "base")
    enc = Encoder(st_model)
    idx.upsert([long_chunk, *others], enc)
    q = enc.encode_queries(["What is the secret depot password?"])[0]
    assert idx.search(q, top_k=1, mode="windows")[0].id == long_chunk.id
    plain_ids = [h.id for h in idx.search(q, top_k=1, mode="plain")]
    assert long_chunk.id not in plain_ids


def test_other_model_is_refused(qdrant_memory, tiny_chunks, st_model, tmp_path):
    idx = open_for_model(qdrant_memory, "c", st_model, "base-model")
    idx.upsert(tiny_chunks[:2], Encoder(st_model))
    with pytest.raises(IndexMismatchError, match=r"base-model.*other-model|other-model"):
        ChunkIndex(qdrant_memory, "c").ensure("other-model", "0" * 16, 384)
    with pytest.raises(IndexMismatchError, match=r"dim 384.*dim 128"):
        ChunkIndex(qdrant_memory, "c").ensure("base-model", model_fingerprint(st_model), 128)
    assert idx.count() == 2  # nothing overwritten


@pytest.mark.parametrize("engine", ["edge", "memory"])
def test_other_model_is_rebuilt_when_asked(engine, qdrant_memory, tiny_chunks, st_model, tmp_path):
    """replace=True: Edge builds beside the old collection (which still answers) and swaps at commit."""
    store = connect(tmp_path / "q") if engine == "edge" else qdrant_memory
    old = open_for_model(store, "c", st_model, "base-model")
    old.upsert(tiny_chunks[:2], Encoder(st_model))
    new = ChunkIndex(store, "c")
    new.ensure("other-model", "0" * 16, 384, replace=True)
    assert new.replaced == {"model": "base-model", "fingerprint": model_fingerprint(st_model), "dim": 384}
    enc = Encoder(st_model)
    new.upsert(tiny_chunks, enc)
    if engine == "edge":
        assert ChunkIndex(store, "c").count() == 2  # the old one serves until the new one is complete
    new.commit()
    again = ChunkIndex(store, "c")
    assert again.metadata()["model"] == "other-model" and again.count() == len(tiny_chunks)
    assert again.search(enc.encode_queries(["Which depot maintains the trams?"])[0], top_k=1)[0].metadata["source"] == "depot.html"
    if engine == "edge":
        store.close()
        assert sorted(p.name for p in (tmp_path / "q" / "edge").iterdir()) == ["c", "c.json"]


def test_embedded_on_disk_persists(tmp_path, tiny_chunks, st_model):
    loc = tmp_path / "qdrant"
    client = connect(loc)
    open_for_model(client, "c", st_model, "base").upsert(tiny_chunks, Encoder(st_model))
    client.close()
    client = connect(loc)
    assert ChunkIndex(client, "c").count() == len(tiny_chunks)
    client.close()


def test_two_stage_matches_full_search(qdrant_memory, tiny_chunks, st_model):
    idx = open_for_model(qdrant_memory, "t", st_model, "base", small_dim=64)
    enc = Encoder(st_model)
    idx.upsert(tiny_chunks, enc)
    assert idx.small_dim == 64
    for question in ("Which depot maintains the trams?", "How much is a monthly pass?", "When did the line open?"):
        q = enc.encode_queries([question])[0]
        for mode in ("windows", "plain"):
            full = [h.id for h in idx.search(q, top_k=3, mode=mode)]
            two = [h.id for h in idx.search(q, top_k=3, mode=mode, two_stage=True, candidates=len(tiny_chunks))]
            assert two == full  # every chunk is a candidate: the rescoring must reproduce full search
        cheap = idx.search(q, top_k=1, two_stage=True, candidates=2)
        assert len(cheap) == 1


def test_two_stage_needs_small_vectors(qdrant_memory, tiny_chunks, st_model):
    from ragtune.errors import InputError

    idx = open_for_model(qdrant_memory, "n", st_model, "base", small_dim=0, quantization="scalar")
    idx.upsert(tiny_chunks[:3], Encoder(st_model))
    q = Encoder(st_model).encode_queries(["depot"])[0]
    assert idx.search(q, top_k=2)  # quantized collection still searches
    with pytest.raises(InputError, match="two-stage"):
        idx.search(q, two_stage=True)


def test_payload_filter(qdrant_memory, tiny_chunks, st_model):
    from qdrant_client import models

    idx = open_for_model(qdrant_memory, "f", st_model, "base")
    enc = Encoder(st_model)
    idx.upsert(tiny_chunks, enc)
    flt = models.Filter(must=[models.FieldCondition(key="source", match=models.MatchValue(value="fares.txt"))])
    hits = idx.search(enc.encode_queries(["Which depot maintains the trams?"])[0], top_k=3, query_filter=flt)
    assert hits and all(h.metadata["source"] == "fares.txt" for h in hits)
