"""The served model: encode a batch of texts and count their tokens, on the worker thread.

Token counts come from the model's own tokenizer and count what the model
reads: special tokens included, cut at ``max_seq_length`` as the encoder cuts.
They run on the batcher's single worker thread with the model, because a
Hugging Face fast tokenizer is not safe to call from several threads at once.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragtune.encoders.encoder import Encoder
from ragtune_server.batching import Encoded

log = logging.getLogger("ragtune_server")

KINDS = ("query", "document")


class ModelWorker:
    """``worker(texts, kind) -> Encoded``: the function the batcher calls."""

    def __init__(self, model: Any, batch_size: int = 64) -> None:
        self.encoder = Encoder(model, batch_size=batch_size)
        self.dimension = self.encoder.dimension
        self.max_seq_length = self.encoder.max_seq_length
        self._tokenizer = getattr(model, "tokenizer", None)

    @property
    def model(self) -> Any:
        return self.encoder.model

    def __call__(self, texts: list[str], kind: str) -> Encoded:
        if kind == "query":
            vectors = self.encoder.encode_queries(texts)
        elif kind == "document":
            vectors = self.encoder.encode_documents(texts)
        else:
            raise ValueError(f"kind={kind!r}: choose one of {KINDS}")
        return Encoded(vectors=vectors, tokens=self.count_tokens(texts))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads per text (whitespace words when the model has no tokenizer)."""
        if self._tokenizer is None:
            return [len(t.split()) for t in texts]
        ids = self._tokenizer(
            list(texts),
            add_special_tokens=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        return [len(x) for x in ids]


def to_base64(vector: np.ndarray) -> str:
    """OpenAI's ``encoding_format="base64"``: the little-endian float32 bytes, base64-encoded."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
