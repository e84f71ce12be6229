"""A LlamaIndex vector store over a ragtune collection, on any ragtune engine.

``RagtuneVectorStore`` is constructed as LlamaIndex's ``QdrantVectorStore`` is,
from plain names, and works on every ragtune engine: the embedded Qdrant Edge
store (a folder; it has no ``QdrantClient`` facade, so ``QdrantVectorStore``
cannot take it), a Qdrant server, ``:memory:`` or Milvus::

    store = RagtuneVectorStore(collection_name="docs", path="./qdrant")          # embedded, on disk
    store = RagtuneVectorStore(collection_name="docs", url="http://localhost:6333", api_key=KEY)
    store = RagtuneVectorStore(collection_name="docs", client=QdrantClient(":memory:"))
    store = RagtuneVectorStore(collection_name="docs", location="milvus:./milvus.db", model_name="default")

Nodes are stored with their LlamaIndex embedding as the plain vector and as
their one window; with a model (``embed_model=`` a ``RagtuneEmbedding``, or
``model_name=``) and ``encode_windows=True`` each node's token windows are
encoded too, so a query finds text past the model's first 256 tokens of a node
(search ranks a node by its best window). ``query`` honours ``doc_ids``,
``node_ids`` and ``MetadataFilters`` (``==``, ``!=``, ``in``, ``nin``, ranges,
AND / OR / NOT, nested); ``get_nodes``, ``delete_nodes``, ``delete`` (by
``ref_doc_id``) and ``clear`` behave as ``QdrantVectorStore``'s.

``build_vector_index`` / ``load_vector_index`` chunk and index a corpus through
ragtune (windows included) or reopen one, and return an ordinary
``VectorStoreIndex`` on this store.

Example:
    >>> from llama_index.core import StorageContext, VectorStoreIndex  # doctest: +SKIP
    >>> store = RagtuneVectorStore(collection_name="docs", path="./qdrant")  # doctest: +SKIP
    >>> index = VectorStoreIndex.from_documents(  # doctest: +SKIP
    ...     documents, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model)
    >>> index.vector_store.close()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.schema import BaseNode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from ragtune.corpus.reader import Chunk
from ragtune.index.chunk_index import ChunkIndex, connect, is_remote, open_for_model
from ragtune.index.filters import Condition, Where
from ragtune.index.fusion import HybridConfig, read_hybrid

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

#: payload keys that are bookkeeping (ragtune's and LlamaIndex's), not a node's metadata;
#: keys starting with ``_`` (LlamaIndex's ``_node_content``, ``_node_type``) are hidden too
HIDDEN_KEYS = frozenset({"text", "windows", "chunk_id", "doc_id", "document_id", "ref_doc_id"})

#: the model a collection records when it was created from LlamaIndex's embeddings alone
UNKNOWN_MODEL = "unknown (LlamaIndex embeddings)"

#: LlamaIndex query mode → ragtune search mode (None: the store's ``default_mode``)
_MODES: dict[VectorStoreQueryMode, str | None] = {
    VectorStoreQueryMode.DEFAULT: None,
    VectorStoreQueryMode.HYBRID: "hybrid",
    VectorStoreQueryMode.SPARSE: "sparse",
    VectorStoreQueryMode.TEXT_SEARCH: "sparse",
}
#: what a DEFAULT query searches: ``hybrid`` (ragtune's default retriever) or a dense mode
DEFAULT_MODES = ("hybrid", "windows", "plain")


def _ragtune_mode(query: VectorStoreQuery, default: str = "hybrid", dense: str = "windows") -> str:
    """The ragtune search mode for a query's LlamaIndex mode (``DEFAULT``: the store's ``default_mode``)."""
    if query.mode not in _MODES:
        supported = ", ".join(m.value for m in _MODES)
        raise ValueError(f"query mode {query.mode.value!r}: RagtuneVectorStore supports {supported}")
    mode = _MODES[query.mode] or default
    return dense if mode == "windows" else mode


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


def public_metadata(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A point's payload less the bookkeeping keys (:data:`HIDDEN_KEYS`, ``_…``): the metadata a node shows."""
    return {k: v for k, v in payload.items() if k not in HIDDEN_KEYS and not k.startswith("_")}


def node_from_payload(point_id: str, payload: Mapping[str, Any], embedding: Sequence[float] | None = None) -> BaseNode:
    """The node a point holds: LlamaIndex's own ``_node_content`` (as ``QdrantVectorStore`` reads it)
    when the payload has it, else a ``TextNode`` of its text and :func:`public_metadata`; its
    ``SOURCE`` is the point's document when the node names none."""
    if "_node_content" in payload:
        node = metadata_dict_to_node(dict(payload))
    else:
        node = TextNode(id_=point_id, text=str(payload.get("text", "")), metadata=public_metadata(payload))
    doc = payload.get("doc_id")
    if doc and doc != "None" and NodeRelationship.SOURCE not in node.relationships:
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=str(doc))
    if embedding is not None and node.embedding is None:
        node.embedding = list(embedding)
    return node


def _embedding(embed_model: Any, model_name: str | None) -> Any:
    """The ragtune embedding behind ``embed_model`` / ``model_name`` (None for neither)."""
    from ragtune.encoders.embedding import EncoderEmbedding

    if embed_model is not None and model_name is not None:
        raise ValueError("give embed_model= or model_name=, not both")
    if model_name is not None:
        from llama_index.embeddings.ragtune import RagtuneEmbedding

        return RagtuneEmbedding(model_name=model_name)
    if embed_model is None:
        return None
    if not isinstance(embed_model, EncoderEmbedding):
        raise TypeError(
            f"embed_model={type(embed_model).__name__}: RagtuneVectorStore encodes through a RagtuneEmbedding; "
            "pass one (or model_name=), or neither to store the embeddings LlamaIndex computes"
        )
    return embed_model


def _width(embed: Any) -> int | None:
    """The width of the vectors a store of ``embed`` holds: its ``dimensions`` (Matryoshka), else the model's."""
    if embed is None:
        return None
    return embed.dimensions or embed.encoder.dimension


def _unit(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    out = np.asarray(vectors, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)


def _chunk(node: BaseNode) -> Chunk:
    meta = dict(node.metadata or {})
    source = str(meta.pop("source", "") or meta.get("file_name") or meta.get("file_path") or "")
    return Chunk(id=node.node_id, text=node.get_content(), doc_id=str(node.ref_doc_id or node.node_id),
                 source=source, metadata=meta)


def _node_payload(node: BaseNode) -> dict[str, Any]:
    """What LlamaIndex needs to give the node back whole (relationships, excluded keys, templates)."""
    full = node_to_metadata_dict(node, remove_text=False, flat_metadata=False)
    return {"_node_content": full["_node_content"], "_node_type": full["_node_type"]}


class RagtuneVectorStore(BasePydanticVectorStore):
    """LlamaIndex's view of a ragtune collection (see the module docstring).

    Where the collection lives: one of ``path`` (a folder: embedded Qdrant Edge,
    created when missing), ``url`` (a Qdrant server; ``api_key``), ``location``
    (any ragtune location: ``:memory:``, a folder, a URL, ``milvus:PATH.db`` or
    ``milvus:http://…``) or ``client`` (a ``QdrantClient``, or a store from
    :func:`ragtune.index.chunk_index.connect`). The store owns what it opens:
    :meth:`close` (or ``with``) releases it, and an embedded folder's lock;
    a ``client`` given stays open.

    Which model: with ``embed_model`` (a ``RagtuneEmbedding``) or ``model_name``
    (a model folder, hub id or ``"default"``, loaded as ``RagtuneEmbedding``
    loads it) the collection is created for that model at once, or checked
    against it (a collection of another model is refused, as ``ragtune index``
    refuses it), and the store can encode windows. An embedding with
    ``dimensions`` (Matryoshka: ``RagtuneEmbedding(dimensions=128)``) makes a
    collection of that width, holding the model's vectors truncated as the
    embedding truncates its own. With neither, the store
    keeps the vectors LlamaIndex computed: a missing collection is created at
    the first :meth:`add`, as wide as those embeddings, recording the model as
    :data:`UNKNOWN_MODEL` (so ragtune tools will not mix another model's
    vectors into it); an existing collection is used as it is.

    Args:
        collection_name: the collection (letters, digits, ``-`` and ``_``).
        path / url / location / client: where it lives (give one).
        api_key: a Qdrant server's API key (a Milvus server's token).
        embed_model / model_name: the model (give at most one).
        default_mode: what LlamaIndex's DEFAULT queries search: ``hybrid`` (each
            node's best window fused with BM25 at the model's fitted weight —
            ragtune's default retriever), ``windows`` or ``plain`` (dense only).
            HYBRID queries (``alpha``, ``sparse_top_k``) and SPARSE / TEXT_SEARCH
            queries (BM25 alone) are answered too.
        dense_mode: ``windows`` (rank a node by its best window) or ``plain`` (its one vector).
        two_stage: candidates from the small Matryoshka vectors, rescored on the full ones.
        encode_windows: encode each added node's token windows with the model
            (else a node's LlamaIndex embedding is its one window; nodes without
            an embedding are always encoded).
        timeout: seconds per request to a server.
        create: False refuses a missing collection instead of creating it.
    """

    model_config = ConfigDict(protected_namespaces=())  # the field model_name, as BaseEmbedding has it

    stores_text: bool = True
    flat_metadata: bool = False

    collection_name: str = "ragtune"
    path: str | None = None
    url: str | None = None
    location: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    model_name: str | None = None
    default_mode: str = "hybrid"
    dense_mode: str = "windows"
    two_stage: bool = False
    encode_windows: bool = False
    timeout: int = 60

    _index: ChunkIndex = PrivateAttr()
    _embed: Any = PrivateAttr(default=None)
    _encoder: Any = PrivateAttr(default=None)
    _created: bool = PrivateAttr(default=False)
    _written: bool = PrivateAttr(default=False)
    _closed: bool = PrivateAttr(default=False)

    def __init__(
        self,
        collection_name: str = "ragtune",
        path: str | Path | None = None,
        url: str | None = None,
        location: str | Path | None = None,
        client: Any = None,
        api_key: str | None = None,
        embed_model: Any = None,
        model_name: str | None = None,
        dense_mode: str = "windows",
        two_stage: bool = False,
        encode_windows: bool = False,
        timeout: int = 60,
        create: bool = True,
        default_mode: str = "hybrid",
        **kwargs: Any,
    ) -> None:
        if dense_mode not in ("windows", "plain"):
            raise ValueError(f"dense_mode={dense_mode!r}: choose 'windows' or 'plain'")
        if default_mode not in DEFAULT_MODES:
            raise ValueError(f"default_mode={default_mode!r}: choose one of {', '.join(DEFAULT_MODES)}")
        embed = _embedding(embed_model, model_name)
        label = None if embed is None else getattr(embed, "model_path", None) or embed.model_name
        super().__init__(
            collection_name=collection_name,
            path=None if path is None else str(path),
            url=url,
            location=None if location is None else str(location),
            api_key=api_key,
            model_name=label,
            dense_mode=dense_mode,
            default_mode=default_mode,
            two_stage=two_stage,
            encode_windows=encode_windows,
            timeout=timeout,
            **kwargs,
        )
        self._embed = embed
        self._encoder = None if embed is None else embed.encoder
        if isinstance(client, ChunkIndex):  # from_index
            self._index = client
            self._created = client.exists()
            return
        store, owned = self._connect(client)
        try:
            if self._encoder is not None:
                index = open_for_model(store, collection_name, self._encoder.model, label, create=create,
                                       dim=_width(embed))
                self._created = True
            else:
                index = ChunkIndex(store, collection_name)
                self._created = index.exists()
                if not create and not self._created:
                    from ragtune.errors import InputError

                    raise InputError(f"collection {collection_name!r} does not exist")
        except BaseException:
            if owned:
                store.close()
            raise
        index.owns_client = owned
        self._index = index

    def _connect(self, client: Any) -> tuple[Any, bool]:
        """The store to use, and whether this vector store opened it (and so closes it)."""
        given = {k: v for k, v in (("path", self.path), ("url", self.url), ("location", self.location)) if v is not None}
        if client is not None:
            if given:
                raise ValueError(f"give client= or {'/'.join(given)}=, not both")
            return client, False
        if len(given) != 1:
            raise ValueError(
                "RagtuneVectorStore needs one of path= (a folder: embedded Qdrant), url= (a Qdrant server), "
                "location= (':memory:', a folder, a URL, milvus:PATH.db) or client= (a QdrantClient)"
                + (f"; got {', '.join(given)}" if given else "")
            )
        if self.url is not None and not is_remote(self.url):
            raise ValueError(f"url={self.url!r}: a Qdrant server's http(s):// URL (a folder is path=)")
        return connect(next(iter(given.values())), self.api_key, self.timeout), True

    @classmethod
    def from_index(cls, index: ChunkIndex, encoder: Any = None, *, embed_model: Any = None, **kwargs: Any) -> RagtuneVectorStore:
        """Wrap an open :class:`~ragtune.index.chunk_index.ChunkIndex` (its collection must exist).

        :meth:`close` closes the index's store only when the index owns it (as
        :func:`ragtune.index.chunk_index.open_index` makes it). ``encoder`` (a
        ragtune ``Encoder``) or ``embed_model`` encodes windows when asked.
        """
        store = cls(index.collection, client=index, embed_model=embed_model, **kwargs)
        if encoder is not None:
            store._encoder = encoder
        return store

    @classmethod
    def class_name(cls) -> str:
        return "RagtuneVectorStore"

    @property
    def client(self) -> Any:
        """The ragtune store underneath (:mod:`ragtune.index.stores.base`)."""
        return self._index.store

    @property
    def index(self) -> ChunkIndex:
        """The :class:`ragtune.index.chunk_index.ChunkIndex` underneath."""
        return self._index

    @property
    def embed_model(self) -> Any:
        """The ``RagtuneEmbedding`` given or loaded (``model_name=``), else None."""
        return self._embed

    def close(self) -> None:
        """Finish writing (the engine's index over what was added) and release what this store opened."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._written and self._created:
                self._index.optimize()
        finally:
            self._index.close()

    def __enter__(self) -> RagtuneVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def optimize(self) -> None:
        """Build the engine's search index over what was added now (else at :meth:`close`).

        Not needed for correct results: Qdrant Edge searches what is not indexed
        yet exactly, and builds as it goes during a long ingest.
        """
        if self._created:
            self._index.optimize()
            self._written = False

    # writing --------------------------------------------------------------
    def _ensure(self, dim: int) -> None:
        """Create the collection (after :meth:`clear`, or for the first nodes without a model), or check its width."""
        if self._created:
            have = self._index.metadata().get("dim")
            if have is not None and have != dim:
                raise ValueError(
                    f"collection {self.collection_name!r} holds {have}-dimensional vectors; "
                    f"these nodes' embeddings have {dim}"
                )
            return
        if self._encoder is not None:
            from ragtune.encoders.loading import embedding_width, model_fingerprint

            model = self._encoder.model
            self._index.ensure(self.model_name or "", model_fingerprint(model),
                               _width(self._embed) or embedding_width(model))
        else:
            self._index.ensure(UNKNOWN_MODEL, "unknown", dim)
        self._created = True

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Write nodes; returns their ids.

        A node's LlamaIndex embedding is its plain vector and its one window;
        with ``encode_windows`` (or for a node without an embedding) the
        model's encoder encodes its token windows.
        """
        if not nodes:
            return []
        chunks = [_chunk(n) for n in nodes]
        given = [n.embedding for n in nodes]
        missing = [i for i, e in enumerate(given) if e is None]
        if missing and self._encoder is None:
            raise ValueError("nodes need embeddings (or give the store embed_model= or model_name=)")
        if self._encoder is not None and (self.encode_windows or missing):
            wv = self._encoder.encode_windows([c.text for c in chunks])
            windows, spans = wv.per_chunk(), wv.spans
            first = wv.first()[:, : _width(self._embed) or None]  # the embedding's width (_unit re-normalises)
            plain = _unit([first[i] if e is None else e for i, e in enumerate(given)])
        else:
            plain = _unit(given)
            windows, spans = [p[None, :] for p in plain], [[(0, 0)]] * len(chunks)
        self._ensure(plain.shape[1])
        self._index.write(chunks, plain, windows, spans, payloads=[_node_payload(n) for n in nodes])
        self._written = True
        return [c.id for c in chunks]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Remove every node of document ``ref_doc_id``."""
        if self._created:
            self._index.delete_documents([ref_doc_id])

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Remove the nodes with these ids that match ``filters``; neither given: every node (as ``QdrantVectorStore``)."""
        if self._created:
            self._index.delete_points(node_ids, to_where(filters))

    def clear(self) -> None:
        """Delete the collection; the next :meth:`add` creates it again."""
        if self._created:
            self._index.drop()
        self._created = self._written = False

    # reading --------------------------------------------------------------
    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, limit: int | None = None
    ) -> list[BaseNode]:
        """The nodes with these ids that match ``filters`` (every node when neither), with their embeddings."""
        if not self._created:
            return []
        records = self._index.get(node_ids, to_where(filters), limit=limit, with_vector=True)
        return [node_from_payload(r.id, r.payload, r.vector) for r in records]

    def hybrid_config(self, alpha: float | None = None, sparse_top_k: int | None = None) -> HybridConfig:
        """The fusion hybrid queries use: the query's ``alpha`` when given, else the weight
        ``ragtune run`` fitted for the model (its folder's ``ragtune_hybrid.json``), else the default."""
        fitted = read_hybrid(self.model_name) if self.model_name else HybridConfig()
        return HybridConfig(
            alpha=fitted.alpha if alpha is None else float(alpha),
            candidates=sparse_top_k or fitted.candidates,
            fitted=fitted.fitted if alpha is None else {"by": "query alpha"},
        )

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nodes nearest the query's embedding, within ``doc_ids``, ``node_ids`` and ``filters``."""
        mode = _ragtune_mode(query, self.default_mode, self.dense_mode)
        if query.query_embedding is None and mode != "sparse":
            raise ValueError("RagtuneVectorStore answers embedding queries (and SPARSE queries by their text)")
        if not self._created:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        parts: list[Condition | Where] = []
        if query.doc_ids:
            parts.append(Condition("doc_id", "in", list(query.doc_ids)))
        if query.node_ids:  # chunk_payload writes the point id as chunk_id: a filter every engine has
            parts.append(Condition("chunk_id", "in", list(query.node_ids)))
        flt = to_where(query.filters)
        if flt is not None:
            parts.append(flt)
        hits = self._index.search(
            None if query.query_embedding is None else np.asarray(query.query_embedding, dtype=np.float32),
            top_k=query.similarity_top_k,
            mode=mode,
            query_filter=Where(must=tuple(parts)) if parts else None,
            two_stage=self.two_stage,
            query_text=query.query_str,
            hybrid=self.hybrid_config(query.alpha, query.sparse_top_k),
        )
        return VectorStoreQueryResult(
            nodes=[node_from_payload(h.id, h.payload) for h in hits],
            similarities=[h.score for h in hits],
            ids=[h.id for h in hits],
        )


# ---------------------------------------------------------------------------
# a VectorStoreIndex over a corpus indexed by ragtune


def build_vector_index(
    documents_or_path: Any,
    embed_model: Any,
    collection_name: str = "ragtune",
    *,
    path: str | Path | None = None,
    url: str | None = None,
    location: str | Path | None = None,
    client: Any = None,
    api_key: str | None = None,
    chunk_size: int = 1024,
    **store_kwargs: Any,
) -> Any:
    """Chunk and index a corpus (a path, or LlamaIndex ``Document``s); return a ``VectorStoreIndex``.

    Chunks are written with their token windows by ``embed_model`` (a
    ``RagtuneEmbedding``), under ids that are stable: the same corpus indexed
    twice keeps the same point count, and a file gives the same ids as a path or as a
    ``Document`` (:func:`ragtune.corpus.reader.chunk_documents`). A node built from a
    ``Document`` has that document's id as its ``ref_doc_id``, so
    ``index.delete_ref_doc(doc.doc_id)`` removes it. Where: as :class:`RagtuneVectorStore`
    (``:memory:`` when none is given). ``index.vector_store.close()`` releases it.
    """
    from llama_index.core import VectorStoreIndex

    from ragtune.corpus.reader import ChunkConfig, chunk_documents, load_corpus

    cfg = ChunkConfig(chunk_size=chunk_size)
    if isinstance(documents_or_path, (str, Path)):
        chunks = load_corpus(documents_or_path, cfg).chunks
    else:
        chunks = chunk_documents(list(documents_or_path), cfg)
    if path is None and url is None and location is None and client is None:
        location = ":memory:"
    store = RagtuneVectorStore(collection_name, path=path, url=url, location=location, client=client,
                               api_key=api_key, embed_model=embed_model, **store_kwargs)
    try:
        store.index.upsert(chunks, store._encoder)
    except BaseException:
        store.close()
        raise
    return VectorStoreIndex.from_vector_store(store, embed_model=embed_model)


def load_vector_index(
    embed_model: Any,
    collection_name: str = "ragtune",
    *,
    path: str | Path | None = None,
    url: str | None = None,
    location: str | Path | None = None,
    client: Any = None,
    api_key: str | None = None,
    **store_kwargs: Any,
) -> Any:
    """A ``VectorStoreIndex`` over an existing ragtune collection (refused when missing or of another model)."""
    from llama_index.core import VectorStoreIndex

    store = RagtuneVectorStore(collection_name, path=path, url=url, location=location, client=client,
                               api_key=api_key, embed_model=embed_model, create=False, **store_kwargs)
    return VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
