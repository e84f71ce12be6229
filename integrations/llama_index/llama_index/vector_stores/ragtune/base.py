"""A LlamaIndex vector store over a ragtune collection, on any ragtune engine.

``RagtuneVectorStore`` is a thin ``BasePydanticVectorStore`` over
:class:`ragtune.index.chunk_index.ChunkIndex`: the embedded Qdrant Edge store (which has
no ``QdrantClient`` facade, so LlamaIndex's ``QdrantVectorStore`` cannot take
it), a Qdrant server or ``:memory:``. Nodes are added with their plain vector
and, when the store has the model's encoder, their token windows, so queries
can rank by best window (``mode="windows"``) — text past the model's first 256
tokens of a node is found. Deleting by ``ref_doc_id`` removes every chunk of
that document; ``MetadataFilters`` (``==``, ``!=``, ``in``, ``nin``, ranges,
AND / OR, nested) become engine filters.

Example:
    >>> from llama_index.core import VectorStoreIndex, StorageContext  # doctest: +SKIP
    >>> store = RagtuneVectorStore.open("runs/demo/qdrant", embed_model)  # doctest: +SKIP
    >>> index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)

from ragtune.corpus.reader import Chunk
from ragtune.index.filters import Condition, Where

_OPS = {
    FilterOperator.EQ: "eq",
    FilterOperator.NE: "ne",
    FilterOperator.IN: "in",
    FilterOperator.NIN: "nin",
    FilterOperator.GT: "gt",
    FilterOperator.GTE: "gte",
    FilterOperator.LT: "lt",
    FilterOperator.LTE: "lte",
}
_HIDDEN = {"windows", "document_id", "ref_doc_id", "doc_id", "chunk_id"}


def to_where(filters: MetadataFilters | None) -> Where | None:
    """LlamaIndex ``MetadataFilters`` → a ragtune :class:`~ragtune.index.filters.Where` (raises on an unsupported operator)."""
    if filters is None or not filters.filters:
        return None
    parts: list[Condition | Where] = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            sub = to_where(f)
            if sub is not None:
                parts.append(sub)
            continue
        op = _OPS.get(f.operator)
        if op is None:
            raise ValueError(f"filter on {f.key!r}: operator {f.operator.value!r} is not supported by ragtune's stores")
        parts.append(Condition(f.key, op, f.value))
    if filters.condition == FilterCondition.OR:
        return Where(should=tuple(parts))
    if filters.condition == FilterCondition.NOT:
        return Where(must_not=tuple(parts))
    return Where(must=tuple(parts))


class RagtuneVectorStore(BasePydanticVectorStore):
    """LlamaIndex's view of a ragtune collection (see the module docstring).

    Args:
        collection: the collection's name.
        mode: ``windows`` (rank a node by its best window) or ``plain``.
        two_stage: candidates from the small Matryoshka vectors, rescored on the full ones.
    """

    stores_text: bool = True
    flat_metadata: bool = False
    collection: str = "ragtune"
    mode: str = "windows"
    two_stage: bool = False

    _index: Any = PrivateAttr()
    _encoder: Any = PrivateAttr(default=None)

    def __init__(self, index: Any, encoder: Any = None, mode: str = "windows", two_stage: bool = False) -> None:
        super().__init__(collection=index.collection, mode=mode, two_stage=two_stage)
        self._index = index
        self._encoder = encoder

    @classmethod
    def open(
        cls,
        location: str | Path,
        embed_model: Any,
        collection: str = "ragtune",
        api_key: str | None = None,
        create: bool = True,
        **kwargs: Any,
    ) -> RagtuneVectorStore:
        """Open (or create) ``collection`` at a folder, ``:memory:`` or a server URL for a ``RagtuneEmbedding``."""
        from ragtune.index.chunk_index import open_index

        index = open_index(location, collection, embed_model.encoder.model, embed_model.model_path,
                           api_key=api_key, create=create)
        return cls(index, embed_model.encoder, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "RagtuneVectorStore"

    @property
    def client(self) -> Any:
        return self._index.store

    @property
    def index(self) -> Any:
        """The :class:`ragtune.index.chunk_index.ChunkIndex` underneath."""
        return self._index

    def close(self) -> None:
        self._index.close()

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Write nodes; with the encoder, each node's windows too (else its one embedding is its window)."""
        if not nodes:
            return []
        chunks = [_chunk(n) for n in nodes]
        if self._encoder is not None:
            wv = self._encoder.encode_windows([c.text for c in chunks])
            given = [n.embedding for n in nodes]
            plain = np.asarray(given, dtype=np.float32) if all(e is not None for e in given) else wv.first()
            self._index.write(chunks, plain, wv.per_chunk(), wv.spans)
        else:
            if any(n.embedding is None for n in nodes):
                raise ValueError("nodes need embeddings (or open the store with a RagtuneEmbedding)")
            plain = np.asarray([n.embedding for n in nodes], dtype=np.float32)
            plain /= np.linalg.norm(plain, axis=1, keepdims=True).clip(1e-12)
            self._index.write(chunks, plain, [p[None, :] for p in plain], [[(0, 0)]] * len(chunks))
        self._index.optimize()
        return [c.id for c in chunks]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        self._index.delete_documents([ref_doc_id])

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if query.query_embedding is None:
            raise ValueError("RagtuneVectorStore answers embedding queries only")
        hits = self._index.search(
            np.asarray(query.query_embedding, dtype=np.float32),
            top_k=query.similarity_top_k,
            mode=self.mode,
            query_filter=to_where(query.filters),
            two_stage=self.two_stage,
        )
        nodes = [
            TextNode(id_=h.id, text=h.text, metadata={k: v for k, v in h.metadata.items() if k not in _HIDDEN},
                     relationships={})
            for h in hits
        ]
        for node, hit in zip(nodes, hits):
            doc = hit.metadata.get("doc_id")
            if doc:
                from llama_index.core.schema import NodeRelationship, RelatedNodeInfo

                node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=str(doc))
        return VectorStoreQueryResult(nodes=nodes, similarities=[h.score for h in hits], ids=[h.id for h in hits])


def _chunk(node: BaseNode) -> Chunk:
    meta = dict(node.metadata or {})
    source = str(meta.pop("source", "") or meta.get("file_name") or meta.get("file_path") or "")
    return Chunk(id=node.node_id, text=node.get_content(), doc_id=str(node.ref_doc_id or node.node_id),
                 source=source, metadata=meta)
