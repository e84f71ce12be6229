from llama_index.vector_stores.ragtune.base import RagtuneVectorStore, to_where

__all__ = ["RagtuneVectorStore", "to_where"]
