"""Qdrant wiring for LlamaIndex: build/open a ``VectorStoreIndex`` and a long-chunk retriever.

``build_index`` writes chunks through ragtune's index (plain + window vectors,
stable ids) and returns a ``VectorStoreIndex`` on
:class:`~llama_index.vector_stores.ragtune.RagtuneVectorStore` over the same
collection (the embedded Qdrant Edge store, a server or ``:memory:``), so
LlamaIndex's query engines, filters and chat engines work on it, ranking by
best window. ``RagtuneQdrantRetriever``
searches by best window (``mode="windows"``), so text past the model's first
256 tokens of a chunk is found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llama_index.embeddings.ragtune import RagtuneEmbedding


def _open(
    embed_model: RagtuneEmbedding,
    collection: str,
    location: str | Path | None,
    url: str | None,
    api_key: str | None,
    client: Any,
    create: bool,
) -> Any:
    """ragtune's store facade over the given client, or over one it opens (and owns)."""
    from ragtune.index.chunk_index import open_for_model, open_index

    model, name = embed_model.encoder.model, embed_model.model_path
    if client is not None:
        return open_for_model(client, collection, model, name, create=create)
    return open_index(url or location or ":memory:", collection, model, name, api_key=api_key, create=create)


def _vector_index(embed_model: RagtuneEmbedding, index: Any, mode: str = "windows") -> Any:
    """A ``VectorStoreIndex`` on :class:`RagtuneVectorStore` over a ragtune collection (any engine)."""
    from llama_index.core import VectorStoreIndex

    from llama_index.vector_stores.ragtune import RagtuneVectorStore

    store = RagtuneVectorStore(index, embed_model.encoder, mode=mode)
    return VectorStoreIndex.from_vector_store(store, embed_model=embed_model)


def build_index(
    documents_or_path: Any,
    embed_model: RagtuneEmbedding,
    collection: str = "ragtune",
    location: str | Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    client: Any = None,
    chunk_size: int = 1024,
) -> Any:
    """Chunk and index a corpus (a path, or LlamaIndex ``Document``s); return a ``VectorStoreIndex``.

    ``location`` is an embedded on-disk Qdrant folder (``url`` a server); the
    same corpus indexed twice keeps the same point count (ids are stable).
    """
    from ragtune.corpus.reader import ChunkConfig, chunk_documents, load_corpus

    cfg = ChunkConfig(chunk_size=chunk_size)
    if isinstance(documents_or_path, (str, Path)):
        chunks = load_corpus(documents_or_path, cfg).chunks
    else:
        chunks = chunk_documents(list(documents_or_path), cfg)
    index = _open(embed_model, collection, location, url, api_key, client, create=True)
    index.upsert(chunks, embed_model.encoder)
    return _vector_index(embed_model, index)


def open_index(
    embed_model: RagtuneEmbedding,
    collection: str = "ragtune",
    location: str | Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    client: Any = None,
) -> Any:
    """A ``VectorStoreIndex`` over an existing ragtune collection (checks the model matches)."""
    return _vector_index(embed_model, _open(embed_model, collection, location, url, api_key, client, create=False))


class RagtuneQdrantRetriever(BaseRetriever):
    """Retrieve chunks from a ragtune collection by best window (or plain vector).

    ``two_stage=True`` finds candidates on the small Matryoshka vectors and
    rescores them on the full ones (Qdrant ``prefetch``).
    """

    def __init__(
        self,
        embed_model: RagtuneEmbedding,
        collection: str = "ragtune",
        location: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        client: Any = None,
        similarity_top_k: int = 5,
        mode: str = "windows",
        two_stage: bool = False,
        **kwargs: Any,
    ) -> None:
        self._embed = embed_model
        self._index = _open(embed_model, collection, location, url, api_key, client, create=False)
        self._top_k = similarity_top_k
        self._mode = mode
        self._two_stage = two_stage
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        import numpy as np

        vec = np.asarray(self._embed.get_query_embedding(query_bundle.query_str), dtype=np.float32)
        hits = self._index.search(vec, top_k=self._top_k, mode=self._mode, two_stage=self._two_stage)
        return [
            NodeWithScore(node=TextNode(id_=h.id, text=h.text, metadata=_public_meta(h.metadata)), score=h.score)
            for h in hits
        ]


def _public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    drop = {"windows", "document_id", "ref_doc_id"}
    return {k: v for k, v in meta.items() if k not in drop}
