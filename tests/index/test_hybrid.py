"""Hybrid search: BM25 sparse vectors in every collection, fused with the best window; languages."""

from __future__ import annotations

import json
import logging

import httpx
import numpy as np
import pytest

from ragtune.corpus.reader import Chunk, chunk_id
from ragtune.encoders.encoder import Encoder
from ragtune.index.chunk_index import connect, open_for_model
from ragtune.index.fusion import (
    HybridConfig,
    fit_alpha,
    fuse,
    fuse_scores,
    read_hybrid,
    write_hybrid,
)
from ragtune.index.lexical import Lexical, LexicalConfig, bm25_scores, detect_language

# Eight troubleshooting notes that differ mostly in their error code: a dense model
# sees eight near-identical passages, BM25 sees the one token that matters.
CODES = ["E-101", "E-117", "E-214", "E-305", "E-322", "E-408", "E-513", "E-620"]
PARTS = ["pump", "heater", "fan", "valve", "sensor", "display", "relay", "filter"]
E214_Q = "What does error E-214 mean?"


def _error_chunks() -> list[Chunk]:
    out = []
    for code, part in zip(CODES, PARTS):
        text = (f"Error code {code} is shown on the panel when the {part} reports a fault. "
                f"Switch the unit off, wait a minute and check the {part} connector before restarting. "
                "If the code returns, contact support with the serial number.")
        out.append(Chunk(id=chunk_id(code, 0, text), text=text, doc_id=f"{code}.md", source=f"errors/{code}.md", metadata={}))
    return out


@pytest.fixture(params=["edge", "memory"])
def error_index(request, tmp_path, st_model):
    loc = tmp_path / "q" if request.param == "edge" else ":memory:"
    store = connect(loc)
    index = open_for_model(store, "errors", st_model, "all-MiniLM-L6-v2")
    index.owns_client = True
    index.upsert(_error_chunks(), Encoder(st_model))
    yield index
    index.close()


def _query(st_model, text):
    return Encoder(st_model).encode_queries([text])[0]


def test_every_new_collection_holds_bm25_of_the_detected_language(error_index):
    meta = error_index.metadata()["lexical"]
    assert meta["language"] == "english" and meta["avg_len"] > 10
    assert error_index.has_lexical


@pytest.mark.parametrize("mode", ["hybrid", "sparse"])
def test_exact_token_is_found(error_index, st_model, mode):
    hits = error_index.search(_query(st_model, E214_Q), top_k=3, mode=mode, query_text=E214_Q)
    assert hits[0].metadata["source"] == "errors/E-214.md", [h.metadata["source"] for h in hits]


def test_default_mode_is_hybrid_and_needs_the_text(error_index, st_model):
    vec = _query(st_model, E214_Q)
    default = error_index.search(vec, top_k=8, query_text=E214_Q)
    hybrid = error_index.search(vec, top_k=8, mode="hybrid", query_text=E214_Q)
    assert [h.id for h in default] == [h.id for h in hybrid]
    # without the text there is nothing for BM25: the default searches dense
    dense = error_index.search(vec, top_k=8, mode="dense")
    assert [h.id for h in error_index.search(vec, top_k=8)] == [h.id for h in dense]
    with pytest.raises(Exception, match="query_text"):
        error_index.search(vec, top_k=3, mode="sparse")


def test_hybrid_scores_are_the_fitted_fusion(error_index, st_model):
    vec = _query(st_model, E214_Q)
    dense = [(h.id, h.score) for h in error_index.search(vec, top_k=8, mode="dense")]
    sparse = [(h.id, h.score) for h in error_index.search(vec, top_k=8, mode="sparse", query_text=E214_Q)]
    for alpha in (1.0, 0.7):
        got = error_index.search(vec, top_k=3, mode="hybrid", query_text=E214_Q, hybrid=HybridConfig(alpha=alpha))
        want = fuse(dense, sparse, alpha, 3)
        assert [(h.id, round(h.score, 4)) for h in got] == [(i, round(s, 4)) for i, s in want]
    # alpha 1 is dense alone, in dense order
    only_dense = error_index.search(vec, top_k=8, query_text=E214_Q, hybrid=HybridConfig(alpha=1.0))
    assert [h.id for h in only_dense] == [i for i, _ in dense]


def test_engine_bm25_equals_the_exact_scorer(error_index, st_model):
    """The engine's IDF-modified sparse score equals ragtune's in-memory BM25 (evaluation and fitting use it)."""
    chunks = _error_chunks()
    lex = error_index.lexical()
    exact = bm25_scores(lex.documents([c.text for c in chunks]), [lex.query(E214_Q)])[0]
    hits = error_index.search(None, top_k=8, mode="sparse", query_text=E214_Q)
    by_id = {c.id: s for c, s in zip(chunks, exact)}
    for h in hits:
        assert h.score == pytest.approx(by_id[h.id], rel=1e-4)


def test_a_collection_without_bm25_searches_dense_and_says_how_to_fix(tmp_path, st_model, caplog):
    store = connect(tmp_path / "old")
    index = open_for_model(store, "old", st_model, "m", lexical=False)
    index.owns_client = True
    index.upsert(_error_chunks(), Encoder(st_model))
    vec = _query(st_model, E214_Q)
    with caplog.at_level(logging.WARNING):
        hits = index.search(vec, top_k=3, query_text=E214_Q)
    assert [h.id for h in hits] == [h.id for h in index.search(vec, top_k=3, mode="dense")]
    assert "re-index" in caplog.text and "--replace" in caplog.text
    with pytest.raises(Exception, match="no BM25 vectors"):
        index.search(vec, top_k=3, mode="sparse", query_text=E214_Q)
    index.close()


def test_danish_corpus_gets_the_danish_stemmer(tmp_path, st_model):
    texts = [
        "Bilen skal til service hvert andet år, og olien skiftes samtidig.",
        "Cyklen opbevares bedst indendørs om vinteren, hvor kæden smøres.",
        "Huset har tre værelser og en have med æbletræer mod syd.",
        "Toget kører hver time fra stationen, også i weekenden.",
    ]
    chunks = [Chunk(id=chunk_id(f"d{i}", 0, t), text=t, doc_id=f"d{i}", source=f"d{i}.txt", metadata={})
              for i, t in enumerate(texts)]
    assert detect_language(texts) == "danish"
    store = connect(tmp_path / "da")
    index = open_for_model(store, "da", st_model, "m")
    index.owns_client = True
    index.upsert(chunks, Encoder(st_model))
    assert index.metadata()["lexical"]["language"] == "danish"
    # "bilerne" (the cars) shares no surface form with "Bilen" (the car): only the stemmer joins them
    hits = index.search(None, top_k=1, mode="sparse", query_text="bilerne")
    assert hits and hits[0].id == chunks[0].id
    english = Lexical(LexicalConfig(language="english"))
    assert not set(english.query("bilerne")[0]) & set(english.documents([texts[0]])[0][0])
    index.close()


def test_language_can_be_named(tmp_path, st_model):
    store = connect(tmp_path / "named")
    index = open_for_model(store, "named", st_model, "m", language="de")
    index.owns_client = True
    index.upsert(_error_chunks()[:2], Encoder(st_model))
    assert index.metadata()["lexical"]["language"] == "german"
    index.close()
    with pytest.raises(Exception, match="BM25 knows"):
        LexicalConfig(language="klingon")


def test_milvus_stays_dense_and_says_so(tmp_path, st_model):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    store = connect(f"milvus:{tmp_path / 'm.db'}")
    index = open_for_model(store, "errors", st_model, "m")
    index.owns_client = True
    index.upsert(_error_chunks(), Encoder(st_model))
    assert not index.has_lexical
    with pytest.raises(Exception, match="Milvus"):
        index.search(None, top_k=3, mode="sparse", query_text=E214_Q)
    hits = index.search(_query(st_model, E214_Q), top_k=3, query_text=E214_Q)  # hybrid: dense, with a hint
    assert len(hits) == 3
    index.close()


def test_fuse_scores_matches_fuse_on_lists():
    rng = np.random.default_rng(0)
    dense, sparse = rng.random((3, 30)), rng.random((3, 30)) * 9
    ids = [f"c{i}" for i in range(30)]
    fused = fuse_scores(dense, sparse, 0.6, 10)
    for q in range(3):
        top = lambda row: sorted(((ids[j], float(row[j])) for j in range(30)), key=lambda kv: -kv[1])[:10]  # noqa: E731
        want = dict(fuse(top(dense[q]), top(sparse[q]), 0.6, 30))
        got = {ids[j]: round(float(fused[q, j]), 6) for j in range(30) if fused[q, j] > 0}
        assert got == pytest.approx({k: v for k, v in want.items() if v > 0})


def test_fit_keeps_a_dense_floor_and_prefers_dense_within_noise(tmp_path):
    rng = np.random.default_rng(1)
    n, d = 60, 40
    relevant = rng.integers(0, d, n)
    sparse = rng.random((n, d))
    sparse[np.arange(n), relevant] += 2.0  # BM25 is perfect on these (lexical) questions
    dense = rng.random((n, d))

    def ndcg(scores):
        ranks = (scores > scores[np.arange(n), relevant][:, None]).sum(axis=1)
        return np.where(ranks < 10, 1 / np.log2(ranks + 2), 0.0)

    fit = fit_alpha(dense, sparse, ndcg, candidates=40)
    assert fit.alpha >= 0.5  # never more BM25 than dense, however lexical the validation questions
    assert fit.fitted["by"] == "validation pairs" and "0.50" in fit.fitted["ndcg@10_by_alpha"]
    write_hybrid(tmp_path, fit)
    assert read_hybrid(tmp_path).alpha == fit.alpha
    assert read_hybrid(tmp_path / "missing").alpha == HybridConfig().alpha


def test_cli_query_modes(tmp_path, tiny_corpus, model_path):
    from typer.testing import CliRunner

    from ragtune.cli.app import app

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for c in _error_chunks():
        (corpus / f"{c.doc_id}").write_text(c.text)
    q = tmp_path / "q"
    runner = CliRunner()
    r = runner.invoke(app, ["index", str(corpus), "--model", model_path, "--store", str(q), "--collection", "e"])
    assert r.exit_code == 0, r.output
    for mode in ("hybrid", "sparse", None):
        args = ["query", E214_Q, "--model", model_path, "--store", str(q), "--collection", "e", "--json", "-k", "1"]
        r = runner.invoke(app, args + (["--mode", mode] if mode else []))
        assert r.exit_code == 0, r.output
        assert json.loads(r.output.strip().splitlines()[0])["source"] == "E-214.md", (mode, r.output)
    r = runner.invoke(app, ["query", E214_Q, "--model", model_path, "--store", str(q), "--collection", "e",
                            "--mode", "dense", "--json", "-k", "8"])
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 8


def test_server_search_modes(tmp_path, st_model, model_path):
    from ragtune_server import create_app
    from tests.helpers import running

    loc = tmp_path / "q"
    store = connect(loc)
    open_for_model(store, "e", st_model, "all-MiniLM-L6-v2").upsert(_error_chunks(), Encoder(st_model))
    store.close()
    app = create_app(model_path, model_name="all-MiniLM-L6-v2", qdrant=str(loc), collection="e")
    with running(app) as srv:
        for mode in (None, "hybrid", "sparse"):
            body = {"query": E214_Q, "top_k": 2, **({"mode": mode} if mode else {})}
            r = httpx.post(f"{srv.url}/v1/search", json=body, timeout=60)
            assert r.status_code == 200, r.text
            assert r.json()["results"][0]["metadata"]["source"] == "errors/E-214.md", (mode, r.text)
        r = httpx.post(f"{srv.url}/v1/search", json={"query": E214_Q, "mode": "fuzzy"}, timeout=60)
        assert r.status_code == 400


def test_official_qdrant_vector_store_with_ragtune_bm25(model_path, tmp_path):
    """LlamaIndex's own QdrantVectorStore(enable_hybrid=True) with ragtune's sparse functions and fitted alpha."""
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.vector_stores.ragtune.sparse import fitted_alpha, qdrant_hybrid_kwargs

    chunks = _error_chunks()
    docs = [Document(text=c.text, metadata={"source": c.source}) for c in chunks]
    client = QdrantClient(":memory:")
    store = QdrantVectorStore("errors", client=client, **qdrant_hybrid_kwargs(texts=[c.text for c in chunks]))
    embed = RagtuneEmbedding(model_path=model_path)
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed
    )
    write_hybrid(tmp_path, HybridConfig(alpha=0.6))
    assert fitted_alpha(tmp_path) == 0.6
    retriever = index.as_retriever(vector_store_query_mode="hybrid", alpha=fitted_alpha(tmp_path),
                                   similarity_top_k=2, sparse_top_k=8)
    hits = retriever.retrieve(E214_Q)
    assert hits[0].node.metadata["source"] == "errors/E-214.md", [h.node.metadata for h in hits]
    client.close()


def test_ragtune_vector_store_hybrid_queries(model_path, tmp_path):
    """RagtuneVectorStore: DEFAULT queries are hybrid, HYBRID (with alpha) and SPARSE queries are answered."""
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.vector_stores.ragtune import RagtuneVectorStore

    embed = RagtuneEmbedding(model_path=model_path)
    store = RagtuneVectorStore(collection_name="errors", path=tmp_path / "q", embed_model=embed)
    docs = [Document(text=c.text, metadata={"source": c.source}) for c in _error_chunks()]
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed
    )
    assert index.as_retriever(similarity_top_k=1).retrieve(E214_Q)[0].node.metadata["source"] == "errors/E-214.md"
    hybrid = index.as_retriever(vector_store_query_mode="hybrid", alpha=0.6, similarity_top_k=1, sparse_top_k=8)
    assert hybrid.retrieve(E214_Q)[0].node.metadata["source"] == "errors/E-214.md"
    sparse = store.query(VectorStoreQuery(query_str=E214_Q, similarity_top_k=1, mode=VectorStoreQueryMode.SPARSE))
    assert sparse.nodes[0].metadata["source"] == "errors/E-214.md"
    store.close()
