from llama_index.vector_stores.ragtune.base import (
    HIDDEN_KEYS,
    UNKNOWN_MODEL,
    RagtuneVectorStore,
    build_vector_index,
    load_vector_index,
    node_from_payload,
    public_metadata,
    to_where,
)

__all__ = [
    "HIDDEN_KEYS",
    "UNKNOWN_MODEL",
    "RagtuneVectorStore",
    "build_vector_index",
    "load_vector_index",
    "node_from_payload",
    "public_metadata",
    "to_where",
]
