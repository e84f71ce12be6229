"""``RagtuneQdrantRetriever``: a LlamaIndex retriever over a ragtune collection, ragtune's default retriever.

It searches a collection that ``ragtune index`` / ``ragtune run`` or
:func:`llama_index.vector_stores.ragtune.build_vector_index` wrote. By default
(``mode="hybrid"``) each chunk's best window is fused with BM25 at the weight
``ragtune run`` fitted for the model, so text past the model's first 256 tokens
of a chunk is found and so is an exact token (an error code, a part number);
``mode="windows"`` / ``"plain"`` search dense only, ``"sparse"`` BM25 only. Its nodes are the
vector store's (:func:`llama_index.vector_stores.ragtune.node_from_payload`).

``query_log=DIR`` logs each retrieval as ``ragtune serve --log-queries DIR`` does
(:mod:`ragtune.pairs.querylog`), so ``ragtune run CORPUS --queries DIR`` can tune on
the questions a LlamaIndex app receives; :meth:`feedback` records which nodes of
the last retrieval (``last_query_id``) answered it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

from llama_index.embeddings.ragtune import RagtuneEmbedding
from llama_index.vector_stores.ragtune import RagtuneVectorStore, node_from_payload
from ragtune.encoders.loading import model_fingerprint
from ragtune.pairs.querylog import QueryLog


class RagtuneQdrantRetriever(BaseRetriever):
    """Retrieve chunks from an existing ragtune collection by best window (or plain vector).

    Where: as :class:`~llama_index.vector_stores.ragtune.RagtuneVectorStore`
    (``path``, ``url``, ``location`` or ``client``), or an open ``vector_store``.
    ``two_stage=True`` finds candidates on the small Matryoshka vectors and
    rescores them on the full ones (Qdrant ``prefetch``). :meth:`close` (or
    ``with``) releases the store it opened. ``query_log`` (a folder or a
    :class:`~ragtune.pairs.querylog.QueryLog`) logs every retrieval.

    Example::

        retriever = RagtuneQdrantRetriever(RagtuneEmbedding(model_name="runs/demo/model"),
                                           path="runs/demo/qdrant", query_log="logs/")
        nodes = retriever.retrieve("How often does the night tram run?")
        retriever.feedback(chosen=[nodes[0].node.node_id])
    """

    def __init__(
        self,
        embed_model: RagtuneEmbedding,
        collection_name: str = "ragtune",
        path: str | Path | None = None,
        location: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        client: Any = None,
        similarity_top_k: int = 5,
        mode: str = "hybrid",
        two_stage: bool = False,
        vector_store: RagtuneVectorStore | None = None,
        query_log: str | Path | QueryLog | None = None,
        **kwargs: Any,
    ) -> None:
        self._embed = embed_model
        self._owns = vector_store is None
        self._store = vector_store or RagtuneVectorStore(
            collection_name, path=path, url=url, location=location, client=client, api_key=api_key,
            embed_model=embed_model, create=False,
        )
        self._top_k = similarity_top_k
        self._mode = mode
        self._two_stage = two_stage
        self._log = QueryLog(query_log) if isinstance(query_log, (str, Path)) else query_log
        self._fingerprint = model_fingerprint(embed_model.encoder.model) if self._log is not None else None
        self.last_query_id: str | None = None
        super().__init__(**kwargs)

    @property
    def vector_store(self) -> RagtuneVectorStore:
        return self._store

    def close(self) -> None:
        """Release the store this retriever opened (one given to it stays open)."""
        if self._owns:
            self._store.close()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> RagtuneQdrantRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        vec = query_bundle.embedding or self._embed.get_query_embedding(query_bundle.query_str)
        hits = self._store.index.search(np.asarray(vec, dtype=np.float32), top_k=self._top_k, mode=self._mode,
                                        two_stage=self._two_stage, query_text=query_bundle.query_str,
                                        hybrid=self._store.hybrid_config())
        if self._log is not None:
            self.last_query_id = self._log.search(
                query_bundle.query_str, self._mode, self._top_k, [(h.id, h.score) for h in hits],
                model=self._fingerprint, collection=self._store.index.collection,
            )
        return [NodeWithScore(node=node_from_payload(h.id, h.payload), score=h.score) for h in hits]

    def feedback(
        self,
        chosen: list[str] | tuple[str, ...] = (),
        rejected: list[str] | tuple[str, ...] = (),
        rating: float | None = None,
        query_id: str | None = None,
    ) -> str:
        """Record which node ids of a logged retrieval (default: the last) answered it.

        Raises:
            ValueError: no query log, an unknown query id, or ids it did not return.
        """
        if self._log is None:
            raise ValueError("feedback needs a query log: RagtuneQdrantRetriever(..., query_log=DIR)")
        qid = query_id or self.last_query_id
        returned = self._log.returned(qid) if qid else None
        if returned is None:
            raise ValueError(f"query_id {qid!r}: no retrieval of this retriever has that id")
        unknown = [i for i in (*chosen, *rejected) if i not in returned]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not among the nodes that retrieval returned")
        return self._log.feedback(qid, chosen, rejected, rating)
