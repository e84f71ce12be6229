"""The embedded Qdrant Edge store under ChunkIndex: search modes, filters, a corpus-following
index (only new chunks encoded, stale ones removed), crash resume, and LlamaIndex on top."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from ragtune.encoders.encoder import Encoder
from ragtune.index.chunk_index import ChunkIndex, connect, open_for_model
from ragtune.index.filters import Condition, Where
from ragtune.index.stores.client import ClientStore
from ragtune.index.stores.edge import EdgeStore


class CountingEncoder(Encoder):
    """The real encoder, counting the chunks it is asked to encode."""

    encoded = 0

    def encode_windows(self, texts, *args, **kwargs):
        self.encoded += len(texts)
        return super().encode_windows(texts, *args, **kwargs)


def _server(name: str):
    """A Qdrant server from QDRANT_URL, or a skip that says how to run these tests against one."""
    import uuid
    import warnings

    url = os.environ.get("QDRANT_URL") or os.environ.get("RAGTUNE_QDRANT_URL", "http://127.0.0.1:6333")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the client warns when it cannot read a server version
            store = connect(url, timeout=2)
            store.client.get_collections()
    except Exception as exc:  # noqa: BLE001 - any failure means no server here
        pytest.skip(f"no Qdrant server reachable at {url} (set QDRANT_URL to run the server path): {type(exc).__name__}")
    return store, f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("engine", ["edge", "server"])
def test_each_engine_searches_like_the_reference(engine, tmp_path, tiny_chunks, st_model, qdrant_memory):
    """The embedded Edge store (a folder) and a Qdrant server (QDRANT_URL) against qdrant-client's
    in-memory reference: same hits and scores in all four search modes, filters, metadata."""
    enc = Encoder(st_model)
    store, name = _store(engine, tmp_path)
    assert isinstance(store, EdgeStore if engine == "edge" else ClientStore)
    try:
        _same_as_reference(store, name, enc, tiny_chunks, st_model, qdrant_memory)
    finally:
        if engine == "server":
            store.client.delete_collection(name)
        store.close()
    if engine == "edge":
        reopened = ChunkIndex(connect(tmp_path / "q"), "c", owns_client=True)
        fares = sum(c.source == "fares.txt" for c in tiny_chunks)  # deleted in _same_as_reference
        assert reopened.count() == len(tiny_chunks) - fares and reopened.metadata()["small_dim"] == 64
        reopened.close()


def _same_as_reference(store, name, enc, tiny_chunks, st_model, qdrant_memory):
    edge = open_for_model(store, name, st_model, "base", small_dim=64)
    edge.upsert(tiny_chunks, enc)
    mem = open_for_model(qdrant_memory, "c", st_model, "base", small_dim=64)
    mem.upsert(tiny_chunks, enc)
    assert edge.count() == mem.count() == len(tiny_chunks)
    q = enc.encode_queries(["Which depot maintains the trams overnight?"])[0]
    for mode in ("plain", "windows"):
        for two_stage in (False, True):
            a = edge.search(q, top_k=4, mode=mode, two_stage=two_stage)
            b = mem.search(q, top_k=4, mode=mode, two_stage=two_stage)
            assert [h.id for h in a] == [h.id for h in b], (mode, two_stage)
            # window vectors are stored in float16 by the Edge engine
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=2e-3)
    assert "Eastfield" in edge.search(q, top_k=1)[0].text
    only = edge.search(q, top_k=10, query_filter={"source": "fares.txt"})
    assert only and {h.metadata["source"] for h in only} == {"fares.txt"}
    not_fares = edge.search(q, top_k=10, query_filter=Where(must=(Condition("source", "ne", "fares.txt"),)))
    assert not_fares and "fares.txt" not in {h.metadata["source"] for h in not_fares}
    edge.delete_documents([next(c.doc_id for c in tiny_chunks if c.source == "fares.txt")])
    assert "fares.txt" not in {h.metadata["source"] for h in edge.search(q, top_k=20)}


def _store(engine, tmp_path):
    if engine == "edge":
        return connect(tmp_path / "q"), "c"
    return _server("ragtune-test")


@pytest.mark.parametrize("engine", ["edge", "server"])
def test_reindexing_follows_the_corpus(engine, tmp_path, tiny_corpus, st_model):
    from ragtune.corpus.reader import ChunkConfig, CorpusReader, load_corpus

    corpus = tmp_path / "docs"
    shutil.copytree(tiny_corpus, corpus)
    cfg = ChunkConfig(chunk_size=100, chunk_overlap=16)
    enc = CountingEncoder(st_model)
    store, name = _store(engine, tmp_path)
    if engine == "server":
        import atexit

        atexit.register(lambda: store.client.delete_collection(name))
    with ChunkIndex(store, name, owns_client=True) as idx:
        idx.ensure("base", "f" * 16, 384)
        reader = CorpusReader(corpus, cfg)  # a stream: one file's chunks at a time
        first = idx.sync(iter(reader), enc)
        assert first["encoded"] == first["points"] == reader.chunks > 0 and first["removed"] == 0
        assert sorted(reader.files) == sorted(p.name for p in corpus.iterdir())
        enc.encoded = 0
        again = idx.sync(load_corpus(corpus, cfg).chunks, enc)
        assert again == {"encoded": 0, "kept": first["points"], "removed": 0, "points": first["points"]}
        assert enc.encoded == 0

        fares_before = [c for c in load_corpus(corpus, cfg).chunks if c.source == "fares.txt"]
        (corpus / "fares.txt").write_text((corpus / "fares.txt").read_text() + "\nNight fares double after midnight.\n")
        (corpus / "timetable.md").unlink()
        chunks = load_corpus(corpus, cfg).chunks
        fares_after = [c for c in chunks if c.source == "fares.txt"]
        changed = len({c.id for c in fares_after} - {c.id for c in fares_before})
        enc.encoded = 0
        edit = idx.sync(chunks, enc)
        assert edit["encoded"] == enc.encoded == changed > 0  # only the edited file's new chunks
        assert edit["points"] == len(chunks)
        assert edit["removed"] == first["points"] - len(chunks) + changed
        q = enc.encode_queries(["What is the timetable on Sundays?"])[0]
        assert all(h.metadata["source"] != "timetable.md" for h in idx.search(q, top_k=10))


def test_a_killed_indexing_run_resumes_where_it_stopped(tmp_path, tiny_corpus, tiny_chunks, st_model, model_path):
    """SIGKILL after half the chunks were written (no flush, no close): the re-run encodes only
    the rest and ends with the same points as a clean run."""
    loc = tmp_path / "q"
    script = textwrap.dedent(
        f"""
        import os, signal
        from ragtune.corpus.reader import ChunkConfig, CorpusReader, load_corpus
        from ragtune.index.chunk_index import open_index
        from ragtune.encoders.encoder import Encoder
        from ragtune.encoders.loading import load_model
        chunks = load_corpus({str(tiny_corpus)!r}, ChunkConfig(chunk_size=100, chunk_overlap=16)).chunks
        st = load_model({model_path!r})
        idx = open_index({str(loc)!r}, "c", st, "base")
        idx.upsert(chunks[: len(chunks) // 2], Encoder(st))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    enc = CountingEncoder(st_model)
    with ChunkIndex(connect(loc), "c", owns_client=True) as idx:
        assert idx.count() == len(tiny_chunks) // 2  # nothing acknowledged was lost
        done = idx.sync(tiny_chunks, enc)
    assert done["encoded"] == enc.encoded == len(tiny_chunks) - len(tiny_chunks) // 2
    assert done["points"] == len(tiny_chunks)


def test_a_local_mode_folder_is_still_read(tmp_path, tiny_chunks, st_model, caplog):
    from ragtune.index.stores.client import local_mode

    old = local_mode(tmp_path / "old")
    open_for_model(old, "c", st_model, "base").upsert(tiny_chunks, Encoder(st_model))
    old.close()
    store = connect(tmp_path / "old")
    assert isinstance(store, ClientStore)
    assert "re-index into a new folder" in caplog.text
    assert ChunkIndex(store, "c").count() == len(tiny_chunks)
    store.close()


@pytest.mark.parametrize("engine", ["edge", "server", "milvus"])
def test_llamaindex_vector_store(engine, tmp_path, tiny_corpus):
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.vector_stores.ragtune import RagtuneVectorStore

    emb = RagtuneEmbedding(model_path="default")
    if engine == "edge":
        location, name = tmp_path / "q", "ragtune"
    elif engine == "milvus":
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
        location, name = f"milvus:{tmp_path}/li.db", "ragtune"
    else:
        server, name = _server("ragtune-test")
        location = server.location
        server.close()
    store = RagtuneVectorStore(collection_name=name, location=location, embed_model=emb)
    docs = SimpleDirectoryReader(str(tiny_corpus), required_exts=[".md", ".txt"]).load_data()
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=emb
    )
    retriever = index.as_retriever(similarity_top_k=3)
    top = retriever.retrieve("How much does a monthly pass cost?")
    assert top and "58 euros" in top[0].node.get_content()
    only = index.as_retriever(
        similarity_top_k=5,
        filters=MetadataFilters(filters=[MetadataFilter(key="file_name", value="fares.txt", operator=FilterOperator.EQ)]),
    ).retrieve("tram")
    assert only and {n.node.metadata["file_name"] for n in only} == {"fares.txt"}
    n = store.index.count()
    fares = next(d for d in docs if d.metadata["file_name"] == "fares.txt")
    index.delete_ref_doc(fares.doc_id)
    assert 0 < store.index.count() < n
    assert all(h.node.metadata["file_name"] != "fares.txt" for h in retriever.retrieve("fare"))
    if engine == "server":
        store.clear()
    store.close()


@pytest.mark.parametrize("engine", ["edge", "local"])
def test_engine_can_be_chosen(tmp_path, engine):
    store = connect(tmp_path / engine, engine=engine)
    assert isinstance(store, EdgeStore if engine == "edge" else ClientStore)
    store.close()


def test_cpu_worker_processes_encode_the_same_vectors(st_model, tiny_chunks):
    """`--workers 2`: sentence-transformers' multi-process pool, same windows and vectors as one process."""
    from ragtune.encoders.encoder import encoding_devices

    devices = encoding_devices(2)
    assert devices == ["cpu", "cpu"]  # no GPUs here
    texts = [c.text for c in tiny_chunks]
    one = Encoder(st_model).encode_windows(texts)
    pooled = Encoder(st_model, devices=devices)
    try:
        two = pooled.encode_windows(texts)
    finally:
        pooled.close()
    assert two.spans == one.spans
    assert float((two.vectors * one.vectors).sum(axis=1).min()) > 0.9999


def test_an_unfinished_collection_is_cleared_so_the_next_run_proceeds(tmp_path):
    """A create that died before its last step, the metadata (a killed process, a full disk), left
    a shard folder with segment data: creating the collection again removes it and proceeds (it
    failed with "path already contains segment data", --replace too, until the folder was deleted
    by hand) — unless another process has that shard open, which is refused."""
    from ragtune.errors import InputError

    store = connect(tmp_path / "q")
    ChunkIndex(store, "c").ensure("base", "f" * 16, 384)
    store.close()
    (tmp_path / "q" / "edge" / "c.json").unlink()
    shard = tmp_path / "q" / "edge" / "c"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys; from qdrant_edge import EdgeShard; s = EdgeShard.load({str(shard)!r}); "
                               "print('open', flush=True); sys.stdin.read(); s.close()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with ChunkIndex(connect(tmp_path / "q"), "c", owns_client=True) as idx, \
                pytest.raises(InputError, match="another process is creating this collection"):
            idx.ensure("base", "f" * 16, 384)
    finally:
        holder.communicate("", timeout=60)
    with ChunkIndex(connect(tmp_path / "q"), "c", owns_client=True) as idx:
        assert not idx.exists()
        idx.ensure("base", "f" * 16, 384)
        assert idx.exists() and idx.count() == 0
