"""A ragtune :class:`~ragtune.encoders.encoder.Encoder` as a LlamaIndex embedding.

``EncoderEmbedding`` is the LlamaIndex ``BaseEmbedding`` view of the one
encoding path: queries and documents go through ``Encoder.encode`` (so a
query-only adapter, prompts and any future inference backend apply), and
``dimensions`` truncates Matryoshka vectors. The core uses it where LlamaIndex
or ragas needs an embedding object; LlamaIndex users get the same class, with
model loading added, as ``llama_index.embeddings.ragtune.RagtuneEmbedding``.

Example:
    >>> from ragtune.encoders.encoder import Encoder
    >>> emb = EncoderEmbedding(Encoder("default"), dimensions=128)  # doctest: +SKIP
    >>> len(emb.get_query_embedding("battery warranty"))  # doctest: +SKIP
    128
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import DEFAULT_EMBED_BATCH_SIZE, BaseEmbedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from ragtune.encoders.encoder import Encoder, truncate


class EncoderEmbedding(BaseEmbedding):
    """LlamaIndex embeddings from a ragtune ``Encoder``.

    Args:
        encoder: the encoder to use; it is not changed: this embedding encodes through
            a copy of it (:meth:`~ragtune.encoders.encoder.Encoder.configured`, the same
            model) with ``embed_batch_size`` and the prompts below laid over its own.
        dimensions: truncate vectors to this many dimensions (Matryoshka), re-normalised.
        query_prompt / text_prompt: text put before queries / documents.
        normalize: L2-normalise vectors (cosine similarity).
    """

    dimensions: int | None = Field(default=None, description="Truncate vectors to this many dimensions (Matryoshka).", gt=0)
    query_prompt: str | None = Field(default=None, description="Text prepended to queries (e.g. 'query: ').")
    text_prompt: str | None = Field(default=None, description="Text prepended to documents (e.g. 'passage: ').")
    normalize: bool = Field(default=True, description="L2-normalise vectors (cosine similarity).")

    _encoder: Encoder = PrivateAttr()

    def __init__(self, encoder: Encoder, embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE, **kwargs: Any) -> None:
        super().__init__(embed_batch_size=embed_batch_size, **kwargs)
        if self.dimensions is not None and self.dimensions > encoder.dimension:
            raise ValueError(f"dimensions={self.dimensions}: the model {self.model_name!r} is only {encoder.dimension} wide")
        # a configured copy (same model): the caller's encoder keeps its own batch size and prompts
        given = {k: v for k, v in (("query", self.query_prompt), ("document", self.text_prompt)) if v}
        self._encoder = encoder.configured(batch_size=embed_batch_size, prompts={**encoder.prompts, **given})

    @classmethod
    def class_name(cls) -> str:
        return "EncoderEmbedding"

    @property
    def encoder(self) -> Encoder:
        """The ragtune encoder behind this embedding."""
        return self._encoder

    @property
    def max_seq_length(self) -> int:
        return self._encoder.max_seq_length

    def _vectors(self, texts: list[str], kind: str) -> list[list[float]]:
        vecs = self._encoder.encode(texts, kind, normalize=self.normalize)
        if self.dimensions is not None:
            vecs = truncate(vecs, self.dimensions) if self.normalize else vecs[:, : self.dimensions]
        return vecs.tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vectors([query], "query")[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vectors([text], "document")[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._vectors(texts, "document")

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
