"""The LlamaIndex integration: the README's five lines, against embedded Qdrant."""

from __future__ import annotations

import pytest
from conftest import FACTS


def test_readme_example(tiny_corpus, tmp_path):
    # --- the README example, verbatim but for paths ---
    from llama_index.core import Settings

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.retrievers.ragtune import build_index

    Settings.embed_model = RagtuneEmbedding(model_path="default")
    index = build_index(tiny_corpus, Settings.embed_model, location=tmp_path / "qdrant", chunk_size=128)
    nodes = index.as_retriever(similarity_top_k=3).retrieve("Which depot maintains the tram fleet?")
    # ---
    assert "Eastfield depot" in nodes[0].node.get_content()
    assert nodes[0].node.metadata["source"] == "depot.html"


def test_embedding_matches_sentence_transformers(st_model):
    import numpy as np

    from llama_index.embeddings.ragtune import RagtuneEmbedding

    emb = RagtuneEmbedding(model_path="default", dimensions=128)
    v = np.asarray(emb.get_text_embedding("tram fares"))
    ref = st_model.encode(["tram fares"], normalize_embeddings=True)[0][:128]
    assert v.shape == (128,)
    assert np.allclose(v, ref / np.linalg.norm(ref), atol=1e-5)
    assert RagtuneEmbedding.class_name() == "RagtuneEmbedding"


def test_async_and_batch(tmp_path):
    import asyncio

    from llama_index.embeddings.ragtune import RagtuneEmbedding

    emb = RagtuneEmbedding(model_path="default")
    batch = emb.get_text_embedding_batch(["a", "b", "c"])
    q = asyncio.run(emb.aget_query_embedding("a"))
    assert len(batch) == 3 and len(q) == 384


def test_query_engine_and_long_chunk_retriever(tiny_corpus, tmp_path):
    """A query engine over the index (with LlamaIndex's MockLLM: no LLM runs here)."""
    from llama_index.core.llms import MockLLM

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.retrievers.ragtune import RagtuneQdrantRetriever, build_index
    from ragtune.index.chunk_index import connect

    emb = RagtuneEmbedding(model_path="default")
    client = connect(tmp_path / "q")
    index = build_index(tiny_corpus, emb, client=client, chunk_size=128)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=2)
    resp = engine.query("Can bicycles be taken on board the trams?")
    assert any("Bicycles" in n.node.get_content() for n in resp.source_nodes)
    retriever = RagtuneQdrantRetriever(emb, client=client, similarity_top_k=2)
    for question, source in FACTS.items():
        hits = retriever.retrieve(question)
        assert hits[0].node.metadata["source"] == source, question


def test_reindexing_same_corpus_keeps_point_count(tiny_corpus, tmp_path):
    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.retrievers.ragtune import build_index
    from ragtune.index.chunk_index import ChunkIndex, connect

    emb = RagtuneEmbedding(model_path="default")
    client = connect(tmp_path / "q")
    build_index(tiny_corpus, emb, client=client, chunk_size=128)
    n = ChunkIndex(client, "ragtune").count()
    build_index(tiny_corpus, emb, client=client, chunk_size=128)
    assert ChunkIndex(client, "ragtune").count() == n > 0


def test_wrong_dimension_is_refused():
    from llama_index.embeddings.ragtune import RagtuneEmbedding

    with pytest.raises(ValueError, match="only 384 wide"):
        RagtuneEmbedding(model_path="default", dimensions=1024)


def test_path_and_documents_give_the_same_point_ids(tiny_corpus, tmp_path):
    """One id recipe: a folder read by ragtune and the same files read by LlamaIndex's
    SimpleDirectoryReader (whose metadata carries absolute paths, sizes and dates)
    give the same chunks and ids, so indexing both ways leaves the count unchanged."""
    import shutil

    from llama_index.core import SimpleDirectoryReader

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.retrievers.ragtune import build_index
    from ragtune.corpus.reader import ChunkConfig, chunk_documents, load_corpus
    from ragtune.index.chunk_index import ChunkIndex, connect

    # the formats both readers read the same way (ragtune reads HTML and JSONL its own way)
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    for name in ("timetable.md", "history.pdf"):
        shutil.copy(tiny_corpus / name, folder / name)
    shutil.copy(tiny_corpus / "fares.txt", folder / "sub" / "fares.txt")
    cfg = ChunkConfig(chunk_size=128)
    from_path = load_corpus(folder, cfg).chunks
    documents = SimpleDirectoryReader(str(folder), recursive=True).load_data()
    from_docs = chunk_documents(documents, cfg)
    assert len(from_path) >= 4
    assert sorted(c.id for c in from_docs) == sorted(c.id for c in from_path)
    assert {c.source for c in from_docs} == {"timetable.md", "history.pdf", "sub/fares.txt"}

    emb = RagtuneEmbedding(model_path="default")
    client = connect(tmp_path / "q")
    build_index(folder, emb, client=client, chunk_size=128)
    n = ChunkIndex(client, "ragtune").count()
    build_index(documents, emb, client=client, chunk_size=128)
    assert ChunkIndex(client, "ragtune").count() == n == len(from_path)
