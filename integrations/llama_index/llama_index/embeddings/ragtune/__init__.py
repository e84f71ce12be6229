from llama_index.embeddings.ragtune.base import RagtuneEmbedding

__all__ = ["RagtuneEmbedding"]
