from llama_index.retrievers.ragtune.base import RagtuneQdrantRetriever, build_index, open_index

__all__ = ["RagtuneQdrantRetriever", "build_index", "open_index"]
