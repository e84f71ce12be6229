"""Encode queries, chunks and windows with one model: every caller's one path.

Query/document-asymmetric models (a query-only adapter) go through
sentence-transformers' ``Router`` module and ``encode_query``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragtune.encoders.loading import READS_ALL, embedding_width, load_model
from ragtune.encoders.windows import WindowSpec, batch_window_spans
from ragtune.errors import ConfigError
from ragtune.progress import track

log = logging.getLogger(__name__)




def truncate(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dim`` components and re-normalise."""
    out = vectors if dim is None or dim >= vectors.shape[-1] else vectors[..., :dim]
    norms = np.linalg.norm(out, axis=-1, keepdims=True)
    return (out / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)


@dataclass
class WindowedVectors:
    """Window vectors of many chunks: ``vectors[i]`` belongs to chunk ``owner[i]``."""

    vectors: np.ndarray
    owner: np.ndarray
    spans: list[list[tuple[int, int]]]

    def _bounds(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.owner)) + 1

    def per_chunk(self) -> list[np.ndarray]:
        """Split into one ``(n_windows, dim)`` array per chunk, in chunk order."""
        return np.split(self.vectors, self._bounds())

    def first(self) -> np.ndarray:
        """``(n_chunks, dim)``: each chunk's first window (what a plain, one-vector index holds)."""
        return self.vectors[np.r_[0, self._bounds()]]


def encoding_devices(workers: int | None = None) -> list[str] | None:
    """Where :class:`Encoder` spreads its work: every GPU when there are several, else ``workers`` CPU processes.

    Args:
        workers: CPU worker processes (0 or 1: encode in this process). Ignored
            when more than one GPU is present: those are used instead.

    Example:
        >>> encoding_devices(4)  # on a machine without GPUs  # doctest: +SKIP
        ['cpu', 'cpu', 'cpu', 'cpu']
    """
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1:
        return [f"cuda:{i}" for i in range(gpus)]
    if workers and workers > 1:
        return ["cpu"] * workers
    return None


class Encoder:
    """Encode queries, documents and document windows with one model: every caller's one path.

    Pair mining, indexing, evaluation, ``ragtune query``, the LlamaIndex
    embedding and the server all encode through this class, so a new inference
    backend plugs in here once (training's validation scores the torch model
    being trained with sentence-transformers' own evaluator). Vectors are computed at the
    model's full width; :func:`truncate` derives any Matryoshka dimension from
    them, so one encoding pass serves every dimension.

    Args:
        model: a loaded ``SentenceTransformer``, or a name for :func:`load_model`.
        batch_size: texts per forward pass.
        prompts: text put before each input of a kind (``{"query": "query: "}``).
        devices: encode on several devices at once through sentence-transformers'
            multi-process pool (``["cuda:0", "cuda:1"]``, or ``["cpu"] * 4`` for
            CPU worker processes); see :func:`encoding_devices`. The torch form only.
        remember_windows: keep each text's window vectors, so a later
            :meth:`encode_windows` of the same text under the same windows is
            not encoded again (``ragtune run`` indexes the corpus, then
            evaluates over it with the same model: one encoding serves both).
            Memory grows with the texts encoded; off by default.

    Example:
        >>> enc = Encoder("default")  # doctest: +SKIP
        >>> enc.encode_queries(["battery warranty"]).shape  # doctest: +SKIP
        (1, 384)
    """

    #: texts per progress update: a multiple of the batch size keeps batches as
    #: one call would make them (texts are length-sorted across blocks)
    BLOCK_BATCHES = 8

    def __init__(
        self,
        model: Any,
        batch_size: int = 64,
        prompts: dict[str, str] | None = None,
        devices: Sequence[str] | None = None,
        remember_windows: bool = False,
    ) -> None:
        if isinstance(model, (str, os.PathLike)) or model is None:
            model = load_model(model)
        self.model = model
        self.batch_size = batch_size
        self.prompts = dict(prompts or {})
        self.devices = list(devices) if devices and len(devices) > 1 else None
        if self.devices and getattr(model, "ragtune_backend", None):
            raise ConfigError("several encoding devices/workers run the torch form only; drop --backend or --workers")
        self._pool: dict[str, Any] | None = None
        # (window spec, text digest) -> (spans, window vectors); None when not remembering
        self._windows: dict[tuple[WindowSpec, bytes], tuple[list[tuple[int, int]], np.ndarray]] | None = (
            {} if remember_windows else None
        )

    def pool(self) -> dict[str, Any] | None:
        """The multi-process pool over ``devices`` (started on first use, stopped at exit), or None."""
        if self.devices and self._pool is None:
            import atexit

            self._pool = self.model.start_multi_process_pool(self.devices)
            atexit.register(self.close)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes, if any."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            self.model.stop_multi_process_pool(pool)

    @property
    def dimension(self) -> int:
        return embedding_width(self.model)

    @property
    def max_seq_length(self) -> int:
        """Tokens the model reads; a static model (no limit) reads a whole text, as one window."""
        n = getattr(self.model, "max_seq_length", None)
        return READS_ALL if n is None or n == float("inf") else int(n)

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def window_spec(self) -> WindowSpec:
        return WindowSpec.for_model(self.max_seq_length)

    def encode(self, texts: Sequence[str], kind: str = "document", normalize: bool = True) -> np.ndarray:
        """``(len(texts), dimension)`` float32 vectors of ``kind`` ``query`` or ``document``.

        A query-only adapter (``Router``) routes queries through its adapter;
        long inputs are reported to the progress display in blocks.
        """
        if kind not in ("query", "document"):
            raise ValueError(f"kind={kind!r}: choose 'query' or 'document'")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prompt = self.prompts.get(kind)
        texts = [prompt + t for t in texts] if prompt else list(texts)
        block = self.batch_size * self.BLOCK_BATCHES
        if len(texts) <= block:
            return self._forward(texts, kind, normalize)
        # longest first, as sentence-transformers orders one call's batches
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        starts = range(0, len(texts), block)
        for start in track(starts, "Encoding", total=len(starts), unit="blocks", transient=True):
            idx = order[start : start + block]
            out[idx] = self._forward([texts[i] for i in idx], kind, normalize)
        return out

    def _forward(self, texts: list[str], kind: str, normalize: bool) -> np.ndarray:
        fn = getattr(self.model, f"encode_{kind}", None)
        kwargs: dict[str, Any] = dict(
            batch_size=self.batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        if self.devices:
            kwargs["pool"] = self.pool()
        if fn is None:  # sentence-transformers < 5
            prompts = getattr(self.model, "prompts", {}) or {}
            if kind in prompts:
                kwargs["prompt_name"] = kind
            fn = self.model.encode
        return np.asarray(fn(texts, **kwargs), dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, "query")

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text; the model reads only its first ``max_seq_length`` tokens."""
        return self.encode(texts, "document")

    def encode_windows(self, texts: Sequence[str], spec: WindowSpec | None = None) -> WindowedVectors:
        """One vector per token window of each text (one window for a short text)."""
        spec = spec or self.window_spec()
        if spec.size > self.max_seq_length:
            raise ConfigError(
                f"window size={spec.size} exceeds the model's max_seq_length={self.max_seq_length}"
            )
        memo = self._windows
        if memo is None:
            return self._encode_windows(texts, spec)
        keys = [(spec, hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in memo]
        if missing:
            fresh = self._encode_windows([texts[i] for i in missing], spec)
            for i, sp, vecs in zip(missing, fresh.spans, fresh.per_chunk()):
                memo[keys[i]] = (sp, vecs)
        parts = [memo[k] for k in keys]
        owner = np.repeat(np.arange(len(parts), dtype=np.int64), [len(v) for _, v in parts])
        dim = self.dimension
        vectors = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, dim), dtype=np.float32)
        return WindowedVectors(vectors=vectors, owner=owner, spans=[list(sp) for sp, _ in parts])

    def _encode_windows(self, texts: Sequence[str], spec: WindowSpec) -> WindowedVectors:
        if self.max_seq_length == READS_ALL:  # a static model reads each text whole: one window
            spans = [[(0, len(t))] for t in texts]
        else:
            spans = batch_window_spans(texts, self.tokenizer, spec)
        flat, owner = [], []
        for i, (text, sp) in enumerate(zip(texts, spans)):
            for a, b in sp:
                flat.append(text[a:b])
                owner.append(i)
        vecs = self.encode(flat, "document")
        return WindowedVectors(vectors=vecs, owner=np.asarray(owner, dtype=np.int64), spans=spans)

    def configured(self, batch_size: int | None = None, prompts: dict[str, str] | None = None) -> Encoder:
        """A copy with another batch size or prompts, sharing this encoder's model; this one is unchanged.

        The copy shares the remembered windows only under the same prompts (a
        document prompt changes the window vectors).

        Example:
            >>> enc = Encoder("default")  # doctest: +SKIP
            >>> enc.configured(prompts={"query": "query: "}).prompts, enc.prompts  # doctest: +SKIP
            ({'query': 'query: '}, {})
        """
        out = copy.copy(self)
        if batch_size is not None:
            out.batch_size = batch_size
        if prompts is not None:
            out.prompts = dict(prompts)
            if out.prompts != self.prompts and self._windows is not None:
                out._windows = {}
        return out
