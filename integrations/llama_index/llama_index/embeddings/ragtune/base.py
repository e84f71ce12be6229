"""``RagtuneEmbedding``: a ragtune model folder as a LlamaIndex embedding.

    from llama_index.core import Settings
    from llama_index.embeddings.ragtune import RagtuneEmbedding
    Settings.embed_model = RagtuneEmbedding(model_path="runs/demo/model")

Loads any form ragtune writes (full fine-tune, LoRA adapter, query-only
adapter) or any sentence-transformers model; ``dimensions`` truncates
Matryoshka vectors (re-normalised).
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import DEFAULT_EMBED_BATCH_SIZE, BaseEmbedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr


class RagtuneEmbedding(BaseEmbedding):
    """Embeddings from a ragtune-tuned (or any sentence-transformers) model."""

    model_path: str = Field(default="default", description="Model folder, hub id, or 'default' (bundled all-MiniLM-L6-v2).")
    dimensions: int | None = Field(default=None, description="Truncate vectors to this many dimensions (Matryoshka).", gt=0)
    query_prompt: str | None = Field(default=None, description="Text prepended to queries (e.g. 'query: ').")
    text_prompt: str | None = Field(default=None, description="Text prepended to documents (e.g. 'passage: ').")
    normalize: bool = Field(default=True, description="L2-normalise vectors (cosine similarity).")
    device: str | None = Field(default=None, description="torch device; default picks CUDA when present.")

    _model: Any = PrivateAttr()

    def __init__(self, model_path: str = "default", embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE, **kwargs: Any) -> None:
        from ragtune.models import embedding_width, load_model, model_label

        kwargs.setdefault("model_name", model_label(model_path))
        super().__init__(model_path=str(model_path), embed_batch_size=embed_batch_size, **kwargs)
        self._model = load_model(self.model_path, device=self.device)
        width = embedding_width(self._model)
        if self.dimensions is not None and self.dimensions > width:
            raise ValueError(f"dimensions={self.dimensions}: the model {self.model_path!r} is only {width} wide")

    @classmethod
    def class_name(cls) -> str:
        return "RagtuneEmbedding"

    @property
    def max_seq_length(self) -> int:
        return int(self._model.max_seq_length)

    @property
    def sentence_transformer(self) -> Any:
        """The underlying ``SentenceTransformer`` (for direct use)."""
        return self._model

    def _encode(self, texts: list[str], kind: str) -> list[list[float]]:
        from ragtune.models import truncate

        prompt = self.query_prompt if kind == "query" else self.text_prompt
        if prompt:
            texts = [prompt + t for t in texts]
        fn = getattr(self._model, f"encode_{kind}", None) or self._model.encode
        vecs = fn(texts, batch_size=self.embed_batch_size, convert_to_numpy=True, normalize_embeddings=self.normalize, show_progress_bar=False)
        if self.dimensions is not None:
            vecs = truncate(vecs, self.dimensions) if self.normalize else vecs[:, : self.dimensions]
        return vecs.tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query], "query")[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encode([text], "document")[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts, "document")

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
