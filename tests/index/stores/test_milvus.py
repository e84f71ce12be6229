"""Milvus beside Qdrant (``--qdrant milvus:PATH.db`` / ``milvus:http://…``): the same hits as Qdrant Edge
in every search mode, the same filters, an index that follows its corpus, the CLI and LlamaIndex on top.

Each test runs on Milvus Lite (embedded) and on a real Milvus 2.3.5 server (``milvus-2.3.5``: the
``milvus_235`` fixture, skipped where the ``milvus`` package cannot run). The search test also runs on
``milvus-lite server`` (``server``: Lite's engine behind Milvus' gRPC protocol), the server path where
the real server cannot be installed (it is Linux x86-64 only).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import FACTS, run_inprocess

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from ragtune.encoders.encoder import Encoder
from ragtune.errors import IndexMismatchError, InputError
from ragtune.index.chunk_index import (
    ChunkIndex,
    check_location,
    connect,
    open_for_model,
)
from ragtune.index.filters import Condition, Where
from ragtune.index.stores.base import StoredPoint, VectorSpec
from ragtune.index.stores.milvus import MilvusStore, milvus_filter

QUESTIONS = [*FACTS, "Which depot maintains the trams overnight?", "student discount on passes"]


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """``milvus:http://127.0.0.1:PORT``: a Milvus protocol server in a subprocess."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path_factory.mktemp("server") / "data"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            pytest.fail("milvus-lite server exited at start")
        time.sleep(0.2)
    yield f"milvus:http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


ENGINES = ["lite", "milvus-2.3.5"]  # Milvus Lite in a .db folder; a real Milvus 2.3.5 server (milvus_235)


def _location(engine: str, tmp_path, request, db: str = "lite/ragtune.db") -> str:
    """ragtune's ``milvus:`` location for ``engine``: Lite's ``db`` under ``tmp_path``, or a server with
    no collections (servers are shared by the tests: what an earlier one left is dropped first)."""
    if engine == "lite":
        return f"milvus:{tmp_path}/{db}"
    location = request.getfixturevalue({"server": "milvus_server", "milvus-2.3.5": "milvus_235"}[engine])
    from pymilvus import MilvusClient

    client = MilvusClient(uri=location[len("milvus:"):])
    for name in client.list_collections():
        client.drop_collection(name)
    client.close()
    return location


def _milvus(engine: str, tmp_path, request) -> MilvusStore:
    store = connect(_location(engine, tmp_path, request))
    assert isinstance(store, MilvusStore)
    return store


@pytest.mark.parametrize("engine", [*ENGINES, "server"])
def test_same_hits_as_qdrant_edge(engine, tmp_path, request, tiny_chunks, st_model):
    """Same ids in the same order (and the same cosine scores) as Qdrant Edge: plain and best-window
    search, one and two stages, payload filters, and after a document is deleted."""
    enc = Encoder(st_model)
    store = _milvus(engine, tmp_path, request)
    edge = open_for_model(connect(tmp_path / "q"), "c", st_model, "base", small_dim=64)
    mil = open_for_model(store, "c", st_model, "base", small_dim=64)
    for idx in (edge, mil):
        idx.upsert(tiny_chunks, enc)
    assert mil.count() == edge.count() == len(tiny_chunks)
    # the same metadata, except that Milvus collections stay dense only (no BM25 vectors)
    assert mil.metadata() == {k: v for k, v in edge.metadata().items() if k != "lexical"}
    assert edge.has_lexical and not mil.has_lexical
    fares = Where(must=(Condition("source", "eq", "fares.txt"),))
    filters = [None, {"source": "fares.txt"}, {"source": ["fares.txt", "depot.html"]},
               Where(must_not=(fares,)), Where(must=(Condition("source", "ne", "fares.txt"),))]
    for question in QUESTIONS:
        q = enc.encode_queries([question])[0]
        for mode in ("plain", "windows"):
            for two_stage in (False, True):
                a = mil.search(q, top_k=4, mode=mode, two_stage=two_stage)
                b = edge.search(q, top_k=4, mode=mode, two_stage=two_stage)
                assert [h.id for h in a] == [h.id for h in b], (question, mode, two_stage)
                # Edge keeps window vectors in float16
                assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=2e-3)
                assert [(h.text, h.metadata) for h in a] == [(h.text, h.metadata) for h in b]
            for flt in filters:
                a = [h.id for h in mil.search(q, top_k=10, mode=mode, query_filter=flt)]
                assert a == [h.id for h in edge.search(q, top_k=10, mode=mode, query_filter=flt)], (mode, flt)
    q = enc.encode_queries(["What does a monthly Harbor Line pass cost?"])[0]
    assert mil.search(q, top_k=1)[0].metadata["source"] == "fares.txt"
    doc = next(c.doc_id for c in tiny_chunks if c.source == "fares.txt")
    for idx in (edge, mil):
        idx.delete_documents([doc])
    assert mil.count() == edge.count() < len(tiny_chunks)
    for mode in ("plain", "windows"):
        hits = mil.search(q, top_k=20, mode=mode)
        assert [h.id for h in hits] == [h.id for h in edge.search(q, top_k=20, mode=mode)]
        assert "fares.txt" not in {h.metadata["source"] for h in hits}
    assert _window_rows(store, "c") == _stored_windows(store, "c")  # the deleted chunks' windows went too
    # Milvus 2.3 holds one vector field a collection: the small vectors' own collections lost the same rows
    own = {"c_vtext_dense_small": mil.count(), "c_vwindows_small": _window_rows(store, "c")}
    assert {c: _rows(store, c) for c in own if store.client.has_collection(c)} == (own if engine == "milvus-2.3.5" else {})
    store.close()
    edge.store.close()


def _rows(store: MilvusStore, collection: str) -> int:
    return int(store.client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


def _window_rows(store: MilvusStore, name: str) -> int:
    return _rows(store, f"{name}_windows")


def _stored_windows(store: MilvusStore, name: str) -> int:
    rows = store.client.query(name, filter='id != ""', output_fields=["n_windows"])
    return sum(int(r["n_windows"]) for r in rows)


@pytest.mark.parametrize("engine", ENGINES)
def test_filters_match_qdrant_edge(engine, tmp_path, request, monkeypatch):
    """Each filter selects the same points on Milvus as on Qdrant Edge: lists, nested keys,
    missing keys, numbers, quotes and backslashes in values, and nested must / should / must_not
    (scrolled two rows a page, so the paging is tested too)."""
    monkeypatch.setattr("ragtune.index.stores.milvus.PAGE", 2)
    payloads = [
        {"source": "a.md", "year": 2021, "tags": ["x", "y"], "meta": {"lang": "en"}},
        {"source": "b.md", "year": 2023, "tags": ["y"], "meta": {"lang": "de"}},
        {"source": 'q"uote\\d.md', "year": 2024.5},
        {"source": "c.md", "flag": True},
        {"year": 2022, "tags": []},
    ]
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(len(payloads))]
    rng = np.random.default_rng(0)
    points = [StoredPoint(i, {"v": rng.normal(size=4), "w": rng.normal(size=(2, 4))}, p) for i, p in zip(ids, payloads)]
    specs = {"v": VectorSpec(4), "w": VectorSpec(4, multi=True)}
    stores = [_milvus(engine, tmp_path, request), connect(tmp_path / "q")]
    for s in stores:
        s.create("f", specs, {"model": "t"})
        s.upsert("f", points)
    C = Condition
    cases = [
        Where(must=(C("source", "eq", "a.md"),)),
        Where(must=(C("source", "eq", 'q"uote\\d.md'),)),
        Where(must=(C("source", "ne", "a.md"),)),
        Where(must=(C("source", "in", ["a.md", "c.md"]),)),
        Where(must=(C("source", "in", []),)),
        Where(must=(C("source", "nin", ["a.md"]),)),
        Where(must=(C("tags", "eq", "y"),)),
        Where(must=(C("tags", "in", ["x", "z"]),)),
        Where(must_not=(C("tags", "eq", "x"),)),
        Where(must=(C("meta.lang", "eq", "de"),)),
        Where(must=(C("year", "gte", 2022), C("year", "lt", 2024))),
        Where(must=(C("year", "gt", 2023),)),
        Where(should=(C("source", "eq", "b.md"), C("year", "eq", 2022))),
        Where(must=(Where(should=(C("year", "lte", 2021), C("year", "gt", 2023))),), must_not=(C("source", "eq", "a.md"),)),
    ]
    for flt in cases:
        got = [sorted(pid for pid, _ in s.scroll_payload("f", ["source"], flt)) for s in stores]
        assert got[0] == got[1], (flt, milvus_filter(flt))
        found = [sorted(f.id for f in s.query("f", "w", [np.ones(4).tolist()], 10, flt=flt)) for s in stores]
        assert found[0] == found[1] == got[1], flt
    # a boolean (Qdrant Edge 0.9 matches none with MatchValue(True); qdrant-client matches it)
    assert [pid for pid, _ in stores[0].scroll_payload("f", [], Where(must=(C("flag", "eq", True),)))] == [ids[3]]
    assert len(list(stores[0].scroll_payload("f", ["source"]))) == len(payloads)
    with pytest.raises(InputError, match="a number"):
        milvus_filter(Where(must=(C("year", "gt", "soon"),)))
    for s in stores:
        s.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_index_follows_the_corpus_and_persists(engine, tmp_path, request, tiny_corpus, st_model):
    """sync(): only new chunks encoded, a deleted document's chunks (and their windows) removed;
    the database reopens with its points and metadata, and refuses another model."""
    from ragtune.corpus.reader import ChunkConfig, load_corpus

    corpus = tmp_path / "docs"
    shutil.copytree(tiny_corpus, corpus)
    cfg = ChunkConfig(chunk_size=100, chunk_overlap=16)
    enc = Encoder(st_model)
    loc = _location(engine, tmp_path, request, "deep/er/ragtune.db")  # Lite: parent folders are created
    with ChunkIndex(connect(loc), "c", owns_client=True) as idx:
        idx.ensure("base", "f" * 16, 384)
        first = idx.sync(load_corpus(corpus, cfg).chunks, enc)
        assert first["encoded"] == first["points"] > 0
        (corpus / "timetable.md").unlink()
        chunks = load_corpus(corpus, cfg).chunks
        again = idx.sync(chunks, enc)
        assert again["encoded"] == 0 and again["removed"] == first["points"] - len(chunks) > 0
        assert again["points"] == len(chunks)
        assert _window_rows(idx.store, "c") == _stored_windows(idx.store, "c")
        q = enc.encode_queries(["How often does the night tram run?"])[0]
        assert all(h.metadata["source"] != "timetable.md" for h in idx.search(q, top_k=20))
    reopened = ChunkIndex(connect(loc), "c", owns_client=True)  # the lock was released at close
    assert reopened.count() == len(chunks) and reopened.metadata()["fingerprint"] == "f" * 16
    with pytest.raises(IndexMismatchError, match="other-model"):
        ChunkIndex(reopened.store, "c").ensure("other-model", "0" * 16, 384)
    reopened.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_other_model_is_rebuilt_beside_and_swapped_in(engine, tmp_path, request, tiny_chunks, st_model):
    store = _milvus(engine, tmp_path, request)
    enc = Encoder(st_model)
    open_for_model(store, "my-docs", st_model, "base").upsert(tiny_chunks[:2], enc)
    new = ChunkIndex(store, "my-docs")
    new.ensure("other-model", "0" * 16, 384, replace=True)
    new.upsert(tiny_chunks, enc)
    assert ChunkIndex(store, "my-docs").count() == 2  # the old one serves until the new one is complete
    new.commit()
    again = ChunkIndex(store, "my-docs")
    assert again.metadata()["model"] == "other-model" and again.count() == len(tiny_chunks)
    q = enc.encode_queries(["Which depot maintains the trams?"])[0]
    assert again.search(q, top_k=1)[0].metadata["source"] == "depot.html"
    # Milvus 2.3 holds one vector field a collection: the small prefetch vectors get their own
    own = ["my_0docs_vtext_dense_small", "my_0docs_vwindows_small"] if engine == "milvus-2.3.5" else []
    assert sorted(store.client.list_collections()) == sorted(["my_0docs", "my_0docs_windows", *own])
    store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_scalar_quantization(engine, tmp_path, request, tiny_chunks, st_model, caplog):
    """HNSW_SQ where the Milvus has it (Lite); a Milvus without it (2.3) refuses in one line and keeps nothing."""
    store = _milvus(engine, tmp_path, request)
    if engine == "milvus-2.3.5":
        with pytest.raises(InputError, match="no HNSW_SQ index") as err:
            open_for_model(store, "s", st_model, "base", small_dim=0, quantization="scalar")
        assert "\n" not in str(err.value) and "quantization 'none'" in str(err.value)
        assert "invalid index type" not in caplog.text  # the one line, without pymilvus' traceback
        assert store.client.list_collections() == []
        store.close()
        return
    idx = open_for_model(store, "s", st_model, "base", small_dim=0, quantization="scalar")
    idx.upsert(tiny_chunks, Encoder(st_model))
    q = Encoder(st_model).encode_queries(["Which depot maintains the trams?"])[0]
    assert idx.search(q, top_k=1)[0].metadata["source"] == "depot.html"
    from qdrant_client import models

    with pytest.raises(InputError, match="Qdrant's"):
        idx.search(q, query_filter=models.Filter(must=[]))
    with pytest.raises(InputError, match="binary"):
        open_for_model(store, "b", st_model, "base", quantization="binary")
    assert not ChunkIndex(store, "b").exists()
    store.close()


def test_milvus_server_fixture_says_why_it_cannot_run(tmp_path, monkeypatch):
    """Where the ``milvus`` package is missing, the server fixture skips with the reason and the fix."""
    from tests.helpers import MilvusUnavailable, start_milvus

    monkeypatch.setitem(sys.modules, "milvus", None)
    with pytest.raises(MilvusUnavailable, match=r"milvus==2\.3\.5 is not installed \(pip install 'ragtune\[milvus-server\]'"):
        start_milvus(tmp_path)


def test_locations(tmp_path, monkeypatch):
    """Milvus Lite paths and server addresses that cannot work are refused in one line."""
    for bad, message in [("milvus:", "milvus:PATH.db"), (f"milvus:{tmp_path}/m", r"ending in \.db"),
                         (f"milvus:{tmp_path}/nothing.db", "no such Milvus Lite database")]:
        with pytest.raises(InputError, match=message) as err:
            check_location(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="cannot reach Milvus"):
        connect("milvus:http://127.0.0.1:1", timeout=5)
    (tmp_path / "file.db").write_text("not a database")
    with pytest.raises(InputError, match="not a Milvus Lite database"):
        connect(f"milvus:{tmp_path}/file.db")
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(InputError, match=r'pip install "ragtune\[milvus\]"'):
        connect(f"milvus:{tmp_path}/m.db")


@pytest.mark.parametrize("engine", ENGINES)
def test_cli_index_and_query_on_milvus(engine, tmp_path, request, tiny_corpus, capsys, model_path):
    """`ragtune index/query --qdrant milvus:…` give the hits they give on a Qdrant folder."""
    found = {}
    milvus = _location(engine, tmp_path, request, "m/ragtune.db")
    for loc in (milvus, str(tmp_path / "q")):
        code, out, err = run_inprocess(capsys, "index", str(tiny_corpus), "--model", model_path, "--qdrant", loc,
                                       "--collection", "c", "--chunk-size", "128")
        assert code == 0, err
        assert "chunks encoded" in out
        # the collection records the folder it follows (Milvus: a collection property), so one file is refused
        code, out, err = run_inprocess(capsys, "index", str(tiny_corpus / "fares.txt"), "--model", model_path,
                                       "--qdrant", loc, "--collection", "c", "--chunk-size", "128")
        assert code == 1 and "--prune" in err and f"follows {tiny_corpus}" in err, err
        for question in list(FACTS)[:3]:
            code, out, err = run_inprocess(capsys, "query", question, "--model", model_path, "--qdrant", loc,
                                           "--collection", "c", "--top-k", "3", "--json")
            assert code == 0, err
            found[loc, question] = [(hit["id"], hit["source"]) for hit in map(json.loads, out.splitlines())]
    for question, source in list(FACTS.items())[:3]:
        hits = found[milvus, question]
        assert hits == found[str(tmp_path / "q"), question] and hits[0][1].endswith(source)
    if engine == "lite":
        code, out, err = run_inprocess(capsys, "query", "x", "--model", model_path, "--qdrant",
                                       f"milvus:{tmp_path}/missing.db", "--collection", "c")
        assert code != 0 and "no such Milvus Lite database" in err


@pytest.mark.parametrize("engine", ENGINES)
def test_llamaindex_on_milvus(engine, tmp_path, request, tiny_corpus):
    """The LlamaIndex vector store on Milvus, as on Qdrant (tests/index/stores/test_edge.py): nodes added,
    retrieved with and without a metadata filter, read back with their vectors, a document deleted;
    and the build_vector_index helper."""
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.vector_stores.ragtune import RagtuneVectorStore, build_vector_index

    emb = RagtuneEmbedding(model_path="default")
    location = _location(engine, tmp_path, request, "li.db")
    store = RagtuneVectorStore(collection_name="docs", location=location, embed_model=emb)
    docs = SimpleDirectoryReader(str(tiny_corpus), required_exts=[".md", ".txt"]).load_data()
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=emb
    )
    retriever = index.as_retriever(similarity_top_k=3)
    assert "58 euros" in retriever.retrieve("How much does a monthly pass cost?")[0].node.get_content()
    fares_only = MetadataFilters(filters=[MetadataFilter(key="file_name", value="fares.txt")])
    only = index.as_retriever(similarity_top_k=5, filters=fares_only).retrieve("tram")
    assert only and {n.node.metadata["file_name"] for n in only} == {"fares.txt"}
    nodes = store.get_nodes()
    assert len(nodes) == store.index.count() > 0
    assert all(n.embedding is not None and len(n.embedding) == 384 for n in nodes)
    fares = next(d for d in docs if d.metadata["file_name"] == "fares.txt")
    index.delete_ref_doc(fares.doc_id)
    assert 0 < store.index.count() < len(nodes)
    assert all(h.node.metadata["file_name"] != "fares.txt" for h in retriever.retrieve("fare"))
    store.close()

    built = build_vector_index(tiny_corpus, emb, "built", location=location, chunk_size=128)
    nodes = built.as_retriever(similarity_top_k=3).retrieve("Which depot maintains the tram fleet?")
    assert "Eastfield depot" in nodes[0].node.get_content()
    built.vector_store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_http_server_on_milvus(engine, tmp_path, request, tiny_chunks, st_model):
    """`ragtune serve --qdrant milvus:…`: /v1/search answers from Milvus as from a Qdrant folder."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from ragtune_server import create_app

    enc = Encoder(st_model)
    results = []
    for loc in (_location(engine, tmp_path, request, "s.db"), str(tmp_path / "q")):
        store = connect(loc)
        open_for_model(store, "c", st_model, "mini").upsert(tiny_chunks, enc)
        store.close()
        app = create_app(st_model, model_name="mini", qdrant=loc, collection="c")
        with TestClient(app, base_url="http://127.0.0.1") as http:  # a Host the server answers to
            body = http.post("/v1/search", json={"query": "Which depot maintains the trams?", "top_k": 3,
                                                  "filter": {"source": ["depot.html", "fares.txt"]}}).json()
        results.append([(h["id"], h["metadata"]["source"]) for h in body["results"]])
    assert results[0] == results[1] and results[0][0][1] == "depot.html"
