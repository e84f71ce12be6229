"""ragtune's BM25 for LlamaIndex's own ``QdrantVectorStore(enable_hybrid=True)``.

Users who keep ``llama-index-vector-stores-qdrant`` get ragtune's lexical side
and its fitted fusion weight without changing store: the sparse functions
below produce the very vectors ragtune writes (Qdrant's BM25 tokenizer, the
corpus's stemmer and stopwords, ``k``/``b`` length normalisation), and the
collection's sparse vector is created with ``Modifier.IDF`` so Qdrant applies
the inverse document frequency, as in a ragtune collection.

Example:
    >>> from llama_index.vector_stores.qdrant import QdrantVectorStore  # doctest: +SKIP
    >>> store = QdrantVectorStore("docs", client=client, **qdrant_hybrid_kwargs(texts=sample))  # doctest: +SKIP
    >>> index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
    ...                                         embed_model=RagtuneEmbedding(model_name="runs/demo/model"))  # doctest: +SKIP
    >>> retriever = index.as_retriever(vector_store_query_mode="hybrid", alpha=fitted_alpha("runs/demo/model"),
    ...                                similarity_top_k=5, sparse_top_k=50)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragtune.index.fusion import read_hybrid
from ragtune.index.lexical import Lexical, LexicalConfig, fitted_config

#: LlamaIndex's ``SparseEncoderCallable``: texts → (indices per text, values per text)
SparseFn = Callable[[list[str]], tuple[list[list[int]], list[list[float]]]]


def bm25_sparse_fns(
    config: LexicalConfig | None = None, texts: Sequence[str] | None = None, language: str | None = None
) -> tuple[SparseFn, SparseFn]:
    """``(sparse_doc_fn, sparse_query_fn)`` for ``QdrantVectorStore``.

    Args:
        config: the BM25 settings; default: fitted to ``texts`` (their language
            and average length), else English with Qdrant's defaults.
        texts: a sample of the corpus, to detect its language and average length.
        language: the language, instead of detecting it (``english``, ``da``, …).
    """
    if config is None:
        config = fitted_config(list(texts), language) if texts else LexicalConfig(language=language or "english")
    lexical = Lexical(config)

    def doc_fn(batch: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        vectors = lexical.documents(batch)
        return [v[0] for v in vectors], [v[1] for v in vectors]

    def query_fn(batch: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        vectors = [lexical.query(t) for t in batch]
        return [v[0] for v in vectors], [v[1] for v in vectors]

    return doc_fn, query_fn


def qdrant_hybrid_kwargs(
    config: LexicalConfig | None = None, texts: Sequence[str] | None = None, language: str | None = None
) -> dict[str, Any]:
    """Keyword arguments that make ``QdrantVectorStore`` hybrid with ragtune's BM25 (IDF in the engine)."""
    from qdrant_client import models

    doc_fn, query_fn = bm25_sparse_fns(config, texts, language)
    return {
        "enable_hybrid": True,
        "sparse_doc_fn": doc_fn,
        "sparse_query_fn": query_fn,
        "sparse_config": models.SparseVectorParams(modifier=models.Modifier.IDF),
    }


def fitted_alpha(model_dir: str | Path | None) -> float:
    """The dense weight ``ragtune run`` fitted for the model in ``model_dir`` (LlamaIndex's ``alpha``)."""
    return read_hybrid(model_dir).alpha
