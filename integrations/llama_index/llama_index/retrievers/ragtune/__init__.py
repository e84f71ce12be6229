from llama_index.retrievers.ragtune.base import RagtuneQdrantRetriever

__all__ = ["RagtuneQdrantRetriever"]
