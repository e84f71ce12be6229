"""Chunks in a vector store (:mod:`.chunk_index`), exact search (:mod:`.exact`), filters (:mod:`.filters`) and the engines (:mod:`.stores`)."""
