"""``RagtuneEmbedding``: a ragtune model folder as a LlamaIndex embedding.

    from llama_index.core import Settings
    from llama_index.embeddings.ragtune import RagtuneEmbedding
    Settings.embed_model = RagtuneEmbedding(model_name="runs/demo/model")

``model_name`` is what ``HuggingFaceEmbedding(model_name=...)`` takes: a model
folder, a hub id, or ``"default"`` (the bundled all-MiniLM-L6-v2);
``model_path`` is the same argument under ragtune's older name (give one).
Loads any form ragtune writes (full fine-tune, LoRA adapter, query-only
adapter) or any sentence-transformers model, and encodes through ragtune's one
encoding path (:class:`ragtune.encoders.embedding.EncoderEmbedding`); ``dimensions``
truncates Matryoshka vectors (re-normalised).
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import DEFAULT_EMBED_BATCH_SIZE
from llama_index.core.bridge.pydantic import Field

from ragtune.encoders.embedding import EncoderEmbedding


class RagtuneEmbedding(EncoderEmbedding):
    """Embeddings from a ragtune-tuned (or any sentence-transformers) model.

    Args:
        model_name: the model, as ``HuggingFaceEmbedding`` takes it: a folder
            (what ``ragtune train`` / ``ragtune run`` wrote), a hub id, or
            ``"default"``. The ``model_name`` field then holds its short label.
        model_path: the same, under ragtune's older name; give one of the two.
    """

    model_path: str = Field(default="default", description="Model folder, hub id, or 'default' (bundled all-MiniLM-L6-v2).")
    device: str | None = Field(default=None, description="torch device; default picks CUDA when present.")
    backend: str = Field(default="torch", description="torch, or onnx / openvino to run a form `ragtune export` wrote.")
    backend_file: str | None = Field(default=None, description="That exported file (default: the int8 one when present).")

    def __init__(
        self,
        model_path: str | None = None,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        *,
        model_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        from ragtune.encoders.encoder import Encoder
        from ragtune.encoders.loading import load_model, model_label

        if model_path is not None and model_name is not None and model_label(model_path) != model_label(model_name):
            raise ValueError(f"model_path={model_path!r} and model_name={model_name!r}: give one of them")
        path = str(model_path if model_path is not None else model_name if model_name is not None else "default")
        encoder = Encoder(
            load_model(path, device=kwargs.get("device"), backend=kwargs.get("backend", "torch"), file=kwargs.get("backend_file"))
        )
        super().__init__(encoder, model_path=path, model_name=model_label(path), embed_batch_size=embed_batch_size, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "RagtuneEmbedding"

    @property
    def sentence_transformer(self) -> Any:
        """The underlying ``SentenceTransformer`` (for direct use)."""
        return self.encoder.model
