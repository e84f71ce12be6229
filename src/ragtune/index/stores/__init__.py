"""The engines under a chunk index: Qdrant Edge, qdrant-client, Milvus."""
