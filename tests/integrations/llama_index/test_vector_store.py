"""The LlamaIndex integration: the README's lines, and RagtuneVectorStore side by side with
LlamaIndex's own QdrantVectorStore (qdrant-client in memory): the same five lines, the same
get_nodes / delete_nodes / clear / delete_ref_doc, queries narrowed by doc_ids and node_ids."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import FACTS

#: tiny documents: (doc id, text); each answers one question of QUESTIONS
DOCS = {
    "fares": "A monthly Harbor Line pass costs 58 euros; students pay 29 euros with a valid card.",
    "depot": "The tram fleet is maintained at the Eastfield depot, which opened in 2004.",
    "night": "After 23:00 the night tram runs every 30 minutes until 02:30.",
    "bikes": "Bicycles can be taken on board the trams outside rush hours, at the rear door.",
}
QUESTIONS = {
    "What does a monthly pass cost?": "fares",
    "Where are the trams maintained?": "depot",
    "How often does the tram run at night?": "night",
}
KINDS = ["qdrant", "ragtune-edge", "ragtune-client"]


@pytest.fixture(scope="module")
def emb():
    from llama_index.embeddings.ragtune import RagtuneEmbedding

    return RagtuneEmbedding(model_name="default")


@pytest.fixture(scope="module")
def embedded_nodes(emb):
    """Two nodes per document (ids known, SOURCE = the document), with LlamaIndex embeddings."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    nodes = []
    for doc, text in DOCS.items():
        for part, sentence in enumerate((text, f"Notice about {doc}: see the {doc} page.")):
            nodes.append(TextNode(
                id_=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc}/{part}")),
                text=sentence,
                metadata={"topic": doc, "part": part},
                excluded_llm_metadata_keys=["part"],
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc)},
            ))
    for node, vec in zip(nodes, emb.get_text_embedding_batch([n.get_content() for n in nodes])):
        node.embedding = vec
    return nodes


def make_store(kind, tmp_path):
    """An empty vector store of each kind, constructed the way LlamaIndex users construct them."""
    from qdrant_client import QdrantClient

    if kind == "qdrant":
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        return QdrantVectorStore(collection_name="docs", client=QdrantClient(":memory:"))
    from llama_index.vector_stores.ragtune import RagtuneVectorStore

    if kind == "ragtune-edge":
        return RagtuneVectorStore(collection_name="docs", path=str(tmp_path / "qdrant"))
    if kind == "ragtune-client":
        return RagtuneVectorStore(collection_name="docs", client=QdrantClient(":memory:"))
    assert kind == "ragtune-milvus"
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    return RagtuneVectorStore(collection_name="docs", location=f"milvus:{tmp_path}/m.db")


def close(store):
    if hasattr(store, "close"):
        store.close()
    else:
        store.client.close()


def copies(nodes):
    return [n.model_copy(deep=True) for n in nodes]


# --- the README -------------------------------------------------------------------------


def test_readme_example(tiny_corpus, tmp_path):
    # --- the README example, verbatim but for paths ---
    from llama_index.core import Settings

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.vector_stores.ragtune import build_vector_index

    Settings.embed_model = RagtuneEmbedding(model_name="default")
    index = build_vector_index(tiny_corpus, Settings.embed_model, path=tmp_path / "qdrant", chunk_size=128)
    nodes = index.as_retriever(similarity_top_k=3).retrieve("Which depot maintains the tram fleet?")
    # ---
    assert "Eastfield depot" in nodes[0].node.get_content()
    assert nodes[0].node.metadata["source"] == "depot.html"
    assert nodes[0].node.ref_doc_id  # the chunk's document
    index.vector_store.close()


@pytest.mark.parametrize("kind", ["qdrant", "ragtune"])
def test_the_five_lines_work_with_both_stores(kind, emb, tmp_path):
    """(c) LlamaIndex's five lines, unchanged but for the store: the same answer from both."""
    from llama_index.core import Document, StorageContext, VectorStoreIndex

    store = make_store("qdrant" if kind == "qdrant" else "ragtune-edge", tmp_path)
    documents = [Document(text=text, doc_id=doc) for doc, text in DOCS.items()]
    # ---
    storage_context = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex.from_documents(documents, storage_context=storage_context, embed_model=emb)
    for question, doc in QUESTIONS.items():
        hits = index.as_retriever(similarity_top_k=2).retrieve(question)
        # ---
        assert hits[0].node.ref_doc_id == doc, question
    # (d) delete_ref_doc removes the document's nodes, and only those
    index.delete_ref_doc("fares")
    left = {n.ref_doc_id for n in store.get_nodes()}
    assert left == set(DOCS) - {"fares"}
    hits = index.as_retriever(similarity_top_k=5).retrieve("What does a monthly pass cost?")
    assert hits and all(h.node.ref_doc_id != "fares" for h in hits)
    close(index.vector_store)


@pytest.mark.parametrize("kind", ["qdrant", "ragtune"])
def test_delete_ref_doc_removes_the_documents_chunks_however_they_were_indexed(kind, emb, tiny_corpus, tmp_path):
    """Documents from SimpleDirectoryReader (ids LlamaIndex made up), indexed with QdrantVectorStore's
    from_documents and with build_vector_index: each node's ref_doc_id is its Document's id, and
    index.delete_ref_doc(doc.doc_id) removes that document's nodes, and only those, in both."""
    from llama_index.core import Document, SimpleDirectoryReader, StorageContext, VectorStoreIndex

    from llama_index.vector_stores.ragtune import build_vector_index

    documents = SimpleDirectoryReader(input_files=[str(tiny_corpus / n) for n in ("fares.txt", "timetable.md",
                                                                                 "depot.html")]).load_data()
    if kind == "qdrant":
        store = make_store("qdrant", tmp_path)
        index = VectorStoreIndex.from_documents(documents, storage_context=StorageContext.from_defaults(vector_store=store),
                                                embed_model=emb)
    else:
        index = build_vector_index(documents, emb, path=tmp_path / "qdrant", chunk_size=128)
    ids = {d.doc_id for d in documents}
    assert {n.ref_doc_id for n in index.vector_store.get_nodes()} == ids
    fares = next(d for d in documents if d.metadata["file_name"] == "fares.txt")
    index.delete_ref_doc(fares.doc_id)
    assert {n.ref_doc_id for n in index.vector_store.get_nodes()} == ids - {fares.doc_id}
    hits = index.as_retriever(similarity_top_k=5).retrieve("What does a monthly Harbor Line pass cost?")
    assert hits and all(h.node.ref_doc_id != fares.doc_id and "58 euros" not in h.node.get_content() for h in hits)
    # and a Document inserted later, as before
    extra = Document(text="Umbrellas left on a tram are kept at the Quay Street office.")
    index.insert(extra)
    index.delete_ref_doc(extra.doc_id)
    assert {n.ref_doc_id for n in index.vector_store.get_nodes()} == ids - {fares.doc_id}
    close(index.vector_store)


# --- the vector store: Qdrant's behaviour ---------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_query_honours_doc_ids_node_ids_and_filters(kind, emb, embedded_nodes, tmp_path):
    """(a) doc_ids / node_ids narrow a query to those nodes (with filters: both)."""
    from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
    from llama_index.core.vector_stores.types import VectorStoreQuery

    store = make_store(kind, tmp_path)
    store.add(copies(embedded_nodes))
    q = emb.get_query_embedding("What does a monthly pass cost?")

    def ids(**kw):
        res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=20, **kw))
        assert len(res.ids) == len(res.nodes) == len(res.similarities)
        return [n.node_id for n in res.nodes]

    assert len(ids()) == len(embedded_nodes)
    by_doc = {n.node_id for n in embedded_nodes if n.ref_doc_id in ("depot", "night")}
    assert set(ids(doc_ids=["depot", "night"])) == by_doc
    picked = [embedded_nodes[1].node_id, embedded_nodes[6].node_id]
    assert set(ids(node_ids=picked)) == set(picked)
    first_parts = MetadataFilters(filters=[MetadataFilter(key="part", value=0)])
    assert ids(node_ids=picked, filters=first_parts) == [embedded_nodes[6].node_id]
    assert ids(doc_ids=["fares"], filters=first_parts) == [embedded_nodes[0].node_id]
    close(store)


@pytest.mark.parametrize("kind", [*KINDS, "ragtune-milvus"])
def test_get_delete_and_clear_behave_as_in_qdrant(kind, embedded_nodes, tmp_path):
    """(b) the same assertions against QdrantVectorStore and RagtuneVectorStore on each engine."""
    from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

    store = make_store(kind, tmp_path)
    nodes = copies(embedded_nodes)
    by_id = {n.node_id: n for n in nodes}
    assert store.add(nodes) == [n.node_id for n in nodes]

    # get_nodes: the nodes as added (text, metadata, document, excluded keys, embedding)
    got = store.get_nodes()
    assert sorted(n.node_id for n in got) == sorted(by_id)
    for n in got:
        orig = by_id[n.node_id]
        assert (n.text, n.metadata, n.ref_doc_id) == (orig.text, orig.metadata, orig.ref_doc_id)
        assert n.excluded_llm_metadata_keys == ["part"]
        assert n.embedding is not None and len(n.embedding) == len(orig.embedding)
    some = [nodes[0].node_id, nodes[3].node_id]
    assert sorted(n.node_id for n in store.get_nodes(node_ids=some)) == sorted(some)
    assert store.get_nodes(node_ids=[]) == []
    depot = MetadataFilters(filters=[MetadataFilter(key="topic", value="depot")])
    assert {n.node_id for n in store.get_nodes(filters=depot)} == {nodes[2].node_id, nodes[3].node_id}
    assert [n.node_id for n in store.get_nodes(node_ids=some, filters=depot)] == [nodes[3].node_id]
    second_bikes = MetadataFilters(
        filters=[MetadataFilter(key="topic", value="bikes"), MetadataFilter(key="part", value=1, operator=FilterOperator.GTE)],
    )
    assert [n.node_id for n in store.get_nodes(filters=second_bikes)] == [nodes[7].node_id]

    # delete_nodes: ids and filters must both match; an empty id list deletes nothing
    store.delete_nodes(node_ids=[nodes[0].node_id], filters=depot)
    store.delete_nodes(node_ids=[])
    assert len(store.get_nodes()) == len(nodes)
    store.delete_nodes(node_ids=[nodes[0].node_id, nodes[2].node_id], filters=depot)
    store.delete_nodes(node_ids=[nodes[1].node_id])
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="night")]))
    left = {n.node_id for n in store.get_nodes()}
    assert left == {n.node_id for n in nodes} - {nodes[i].node_id for i in (1, 2, 4, 5)}
    # delete (by ref_doc_id) removes a document's nodes
    store.delete("bikes")
    assert {n.ref_doc_id for n in store.get_nodes()} == {"fares", "depot"}
    # neither ids nor filters: every node
    store.delete_nodes()
    assert store.get_nodes() == []

    # clear drops the collection; the next add creates it again
    store.add(copies(nodes))
    store.clear()
    assert not store.client.collection_exists("docs") if kind == "qdrant" else not store.index.exists()
    store.add(copies(nodes[:2]))
    assert sorted(n.node_id for n in store.get_nodes()) == sorted(n.node_id for n in nodes[:2])
    close(store)


def test_unsupported_query_modes_are_refused(tmp_path, embedded_nodes):
    from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

    from llama_index.vector_stores.ragtune import RagtuneVectorStore

    with RagtuneVectorStore(collection_name="docs", location=":memory:") as store:
        store.add(copies(embedded_nodes))
        q = embedded_nodes[0].embedding
        assert store.query(VectorStoreQuery(query_embedding=q, mode=VectorStoreQueryMode.DEFAULT)).ids
        for mode in (VectorStoreQueryMode.MMR, VectorStoreQueryMode.SVM):
            with pytest.raises(ValueError, match="supports default, hybrid, sparse"):
                store.query(VectorStoreQuery(query_embedding=q, query_str="x", mode=mode))


def test_constructor_forms_and_the_model_a_collection_records(tmp_path, emb, embedded_nodes):
    """path / location / model_name / embed_model; a collection made from LlamaIndex's embeddings
    alone records no known model, and a store with a model refuses it; the store owns what it opens."""
    from llama_index.vector_stores.ragtune import UNKNOWN_MODEL, RagtuneVectorStore
    from ragtune.errors import IndexMismatchError, InputError

    with pytest.raises(ValueError, match="needs one of path="):
        RagtuneVectorStore(collection_name="docs")
    with pytest.raises(ValueError, match="got path, location"):
        RagtuneVectorStore(collection_name="docs", path=str(tmp_path / "a"), location=":memory:")
    with pytest.raises(ValueError, match="http"):
        RagtuneVectorStore(collection_name="docs", url=str(tmp_path / "a"))

    folder = str(tmp_path / "qdrant")
    store = RagtuneVectorStore(collection_name="docs", path=folder)
    assert not store.index.exists() and store.get_nodes() == []  # created at the first add
    store.add(copies(embedded_nodes))
    assert store.index.metadata()["model"] == UNKNOWN_MODEL and store.index.metadata()["dim"] == 384
    store.close()
    store.close()  # twice is fine
    with pytest.raises(IndexMismatchError):
        RagtuneVectorStore(collection_name="docs", path=folder, model_name="default")
    again = RagtuneVectorStore(collection_name="docs", path=folder)  # reopened: the nodes were kept
    assert len(again.get_nodes()) == len(embedded_nodes)
    again.close()

    # with a model the collection exists at once, made for that model
    with RagtuneVectorStore(collection_name="tuned", path=folder, model_name="default") as tuned:
        assert tuned.index.exists() and tuned.index.metadata()["dim"] == 384
        assert tuned.embed_model is not None and tuned.model_name == "default"
    with RagtuneVectorStore(collection_name="tuned", path=folder, embed_model=emb, create=False) as reread:
        assert reread.index.count() == 0
    with pytest.raises(InputError, match="does not exist"):
        RagtuneVectorStore(collection_name="missing", path=folder, create=False)


def test_a_node_past_the_first_window_is_found_with_encode_windows(tmp_path, emb):
    """Nodes added with their one LlamaIndex embedding are found in windows mode; with
    encode_windows=True a fact far into a long node is found by its window."""
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from llama_index.vector_stores.ragtune import RagtuneVectorStore

    filler = " ".join(f"The timetable lists stop number {i} on the harbour route." for i in range(60))
    long = TextNode(id_=str(uuid.uuid4()), text=filler + " Lost umbrellas are kept at the Quay Street office.")
    short = [TextNode(id_=str(uuid.uuid4()), text=t) for t in DOCS.values()]
    q = emb.get_query_embedding("Where are lost umbrellas kept?")
    for encode in (False, True):
        nodes = [long.model_copy(deep=True), *(n.model_copy(deep=True) for n in short)]
        for n, v in zip(nodes, emb.get_text_embedding_batch([n.text for n in nodes])):
            n.embedding = v
        with RagtuneVectorStore(collection_name=f"w{encode:d}", path=str(tmp_path / "q"), embed_model=emb,
                                encode_windows=encode) as store:
            store.add(nodes)
            windows = store.index.get([long.node_id])[0].payload["windows"]
            assert (windows == "0-0") != encode
            top = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=1)).ids
            if encode:
                assert top == [long.node_id]
            by_text = store.query(VectorStoreQuery(query_embedding=nodes[1].embedding, similarity_top_k=1)).ids
            assert by_text == [nodes[1].node_id]  # one window = its embedding: found in windows mode


# --- the embedding --------------------------------------------------------------------


def test_embedding_matches_sentence_transformers(st_model):
    import numpy as np

    from llama_index.embeddings.ragtune import RagtuneEmbedding

    emb = RagtuneEmbedding(model_path="default", dimensions=128)
    v = np.asarray(emb.get_text_embedding("tram fares"))
    ref = st_model.encode(["tram fares"], normalize_embeddings=True)[0][:128]
    assert v.shape == (128,)
    assert np.allclose(v, ref / np.linalg.norm(ref), atol=1e-5)
    assert RagtuneEmbedding.class_name() == "RagtuneEmbedding"


def test_model_name_is_what_huggingface_embedding_takes(emb, model_path):
    from llama_index.embeddings.ragtune import RagtuneEmbedding

    assert emb.model_path == "default" and emb.model_name == "all-MiniLM-L6-v2"
    by_folder = RagtuneEmbedding(model_name=model_path)
    assert by_folder.model_path == model_path
    assert by_folder.get_query_embedding("tram") == pytest.approx(emb.get_query_embedding("tram"), abs=1e-5)
    with pytest.raises(ValueError, match="give one of them"):
        RagtuneEmbedding(model_path="default", model_name=model_path)


def test_encoder_embedding_leaves_its_encoder_alone(st_model):
    from ragtune.encoders.embedding import EncoderEmbedding
    from ragtune.encoders.encoder import Encoder

    enc = Encoder(st_model, batch_size=32, prompts={"query": "q: "})
    emb = EncoderEmbedding(enc, embed_batch_size=7, text_prompt="passage: ", model_name="mini")
    assert (enc.batch_size, enc.prompts) == (32, {"query": "q: "})
    assert emb.encoder is not enc and emb.encoder.model is enc.model
    assert (emb.encoder.batch_size, emb.encoder.prompts) == (7, {"query": "q: ", "document": "passage: "})
    import numpy as np

    assert np.allclose(emb.get_query_embedding("tram"), enc.encode(["tram"], "query")[0], atol=1e-6)


def test_async_and_batch(emb):
    import asyncio

    batch = emb.get_text_embedding_batch(["a", "b", "c"])
    q = asyncio.run(emb.aget_query_embedding("a"))
    assert len(batch) == 3 and len(q) == 384


def test_wrong_dimension_is_refused():
    from llama_index.embeddings.ragtune import RagtuneEmbedding

    with pytest.raises(ValueError, match="only 384 wide"):
        RagtuneEmbedding(model_path="default", dimensions=1024)


# --- build_vector_index / load_vector_index and the long-chunk retriever --------------


def test_query_engine_and_long_chunk_retriever(tiny_corpus, tmp_path, emb):
    """A query engine over the index (with LlamaIndex's MockLLM: no LLM runs here)."""
    from llama_index.core.llms import MockLLM

    from llama_index.retrievers.ragtune import RagtuneQdrantRetriever
    from llama_index.vector_stores.ragtune import build_vector_index, load_vector_index
    from ragtune.errors import InputError
    from ragtune.index.chunk_index import connect

    client = connect(tmp_path / "q")
    index = build_vector_index(tiny_corpus, emb, client=client, chunk_size=128)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=2)
    resp = engine.query("Can bicycles be taken on board the trams?")
    assert any("Bicycles" in n.node.get_content() for n in resp.source_nodes)
    with RagtuneQdrantRetriever(emb, client=client, similarity_top_k=2, query_log=tmp_path / "logs") as retriever:
        for question, source in FACTS.items():
            hits = retriever.retrieve(question)
            assert hits[0].node.metadata["source"] == source, question
            assert "windows" not in hits[0].node.metadata and hits[0].node.ref_doc_id
        # the LlamaIndex side logs retrievals as `ragtune serve --log-queries` does, with feedback
        fid = retriever.feedback(chosen=[hits[0].node.node_id], rejected=[hits[1].node.node_id])
        with pytest.raises(ValueError, match="not among"):
            retriever.feedback(chosen=["some-other-node"])
    from ragtune.pairs.querylog import read_query_log

    logged = read_query_log(tmp_path / "logs")
    assert [s["query"] for s in logged.searches.values()] == list(FACTS)
    last = logged.searches[retriever.last_query_id]
    assert [r["id"] for r in last["results"]] == [h.node.node_id for h in hits] and last["mode"] == "hybrid"
    assert logged.feedback[0]["id"] == fid and logged.feedback[0]["chosen"] == [hits[0].node.node_id]
    index.vector_store.close()  # a client given stays open
    client.close()

    loaded = load_vector_index(emb, path=tmp_path / "q")  # reopened from the folder, owned
    assert loaded.as_retriever(similarity_top_k=1).retrieve("Which depot maintains the tram fleet?")
    loaded.vector_store.close()
    with pytest.raises(InputError, match="does not exist"):
        load_vector_index(emb, "other", path=tmp_path / "q")


def test_a_matryoshka_embedding_builds_inserts_and_retrieves(tiny_corpus, tmp_path):
    """RagtuneEmbedding(dimensions=128): the collection is 128 wide, and build, insert, the
    retrievers (two-stage too) and reopening all work with it; the full-width model is refused."""
    from llama_index.core import Document

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.retrievers.ragtune import RagtuneQdrantRetriever
    from llama_index.vector_stores.ragtune import build_vector_index, load_vector_index
    from ragtune.errors import IndexMismatchError

    emb = RagtuneEmbedding(model_name="default", dimensions=128)
    index = build_vector_index(tiny_corpus, emb, path=tmp_path / "q", chunk_size=128)
    store = index.vector_store
    assert store.index.metadata()["dim"] == 128
    assert {len(n.embedding) for n in store.get_nodes()} == {128}
    for question, source in FACTS.items():
        assert index.as_retriever(similarity_top_k=1).retrieve(question)[0].node.metadata["source"] == source
    index.insert(Document(text="Umbrellas left on a tram are kept at the lost property desk for 30 days."))
    top = index.as_retriever(similarity_top_k=1).retrieve("Where are lost umbrellas kept?")[0]
    assert "Umbrellas" in top.node.get_content()
    with RagtuneQdrantRetriever(emb, vector_store=store, similarity_top_k=1, mode="windows", two_stage=True) as r:
        assert r.retrieve("Which depot maintains the tram fleet?")[0].node.metadata["source"] == "depot.html"
    store.close()
    again = load_vector_index(emb, path=tmp_path / "q")
    assert again.as_retriever(similarity_top_k=1).retrieve("Where are lost umbrellas kept?")[0].node.text == top.node.text
    again.vector_store.close()
    with pytest.raises(IndexMismatchError, match="dim 128"):
        load_vector_index(RagtuneEmbedding(model_name="default"), path=tmp_path / "q")


def test_reindexing_same_corpus_keeps_point_count(tiny_corpus, tmp_path, emb):
    from llama_index.vector_stores.ragtune import build_vector_index
    from ragtune.index.chunk_index import ChunkIndex, connect

    client = connect(tmp_path / "q")
    build_vector_index(tiny_corpus, emb, client=client, chunk_size=128)
    n = ChunkIndex(client, "ragtune").count()
    build_vector_index(tiny_corpus, emb, client=client, chunk_size=128)
    assert ChunkIndex(client, "ragtune").count() == n > 0
    client.close()


def test_path_and_documents_give_the_same_point_ids(tiny_corpus, tmp_path, emb):
    """One id recipe: a folder read by ragtune and the same files read by LlamaIndex's
    SimpleDirectoryReader (whose metadata carries absolute paths, sizes and dates, which
    keeps a Windows file's \\r\\n and reads HTML and JSONL files raw) give the same chunks
    and ids, so indexing both ways leaves the count unchanged, as the README says."""
    import shutil

    from llama_index.core import SimpleDirectoryReader

    from llama_index.vector_stores.ragtune import build_vector_index
    from ragtune.corpus.reader import ChunkConfig, chunk_documents, load_corpus
    from ragtune.index.chunk_index import ChunkIndex, connect

    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    for name in ("timetable.md", "history.pdf", "depot.html", "faq.jsonl"):
        shutil.copy(tiny_corpus / name, folder / name)
    shutil.copy(tiny_corpus / "fares.txt", folder / "sub" / "fares.txt")
    windows_text = (tiny_corpus / "timetable.md").read_text().replace("Harbor", "Windows").replace("\n", "\r\n")
    (folder / "windows.md").write_bytes(windows_text.encode())
    cfg = ChunkConfig(chunk_size=128)
    from_path = load_corpus(folder, cfg).chunks
    documents = SimpleDirectoryReader(str(folder), recursive=True).load_data()
    from_docs = chunk_documents(documents, cfg)
    assert len(from_path) >= 9
    assert sorted(c.id for c in from_docs) == sorted(c.id for c in from_path)
    assert {c.source for c in from_docs} == {"timetable.md", "history.pdf", "sub/fares.txt", "depot.html",
                                             "faq.jsonl", "windows.md"}
    assert not any("<" in c.text or "\r" in c.text for c in from_docs)

    client = connect(tmp_path / "q")
    build_vector_index(folder, emb, client=client, chunk_size=128)
    n = ChunkIndex(client, "ragtune").count()
    build_vector_index(documents, emb, client=client, chunk_size=128)
    assert ChunkIndex(client, "ragtune").count() == n == len(from_path)
    client.close()
