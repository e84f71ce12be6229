"""A hosted embedding model (OpenAI, any OpenAI-compatible server, a LlamaIndex provider) as a baseline.

``--baseline`` names one, and evaluation scores it beside base and tuned: the
question it answers is "does the small model I tuned beat the API I would
otherwise pay for?". :class:`HostedEncoder` is an :class:`~ragtune.encoders.encoder.Encoder`
without a local model, so it goes through the one evaluation loop; it is scored
in plain mode only (no token windows: a hosted model's tokenizer is not ours)
and at its own width. Every vector it fetches is kept in an on-disk cache keyed
by (endpoint, model, text sha256), so a re-run never pays twice; what a run
fetched, its tokens (the API's ``usage`` when given) and their list price go
into the report.

Specs:
    ``http://127.0.0.1:8000/v1`` or ``...#MODEL``: an OpenAI-compatible server
    (vLLM, LiteLLM, ``ragtune serve``), through the ``openai`` client; its key
    from ``RAGTUNE_BASELINE_KEY`` (``OPENAI_API_KEY`` only for https://api.openai.com:
    :func:`ragtune.providers.api_key_for`).
    ``openai:text-embedding-3-small``: OpenAI itself (``OPENAI_API_KEY``,
    ``OPENAI_BASE_URL``), the same client: its ``usage`` prices the run.
    ``ollama:nomic-embed-text``, ``cohere:...``, ...: a LlamaIndex embedding
    class, when its package is installed (tokens estimated).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ragtune.encoders.encoder import Encoder, WindowedVectors
from ragtune.encoders.loading import READS_ALL
from ragtune.encoders.windows import WindowSpec
from ragtune.errors import ConfigError, InputError
from ragtune.progress import track
from ragtune.providers import BASELINE_KEY, NO_KEY, api_key_for, optional_import, split_spec

__all__ = [
    "BASELINE", "PRICES_USD_PER_1M", "BaselineSpec", "EmbeddingCache", "HostedEncoder", "hosted_baselines", "is_hosted_spec",
    "parse_baseline",
]

#: the report label of the hosted baseline
BASELINE = "baseline"
#: USD per 1M input tokens: OpenAI's list prices (openai.com/api/pricing) as of
#: 2025-01, unchanged since text-embedding-3 launched on 2024-01-25. Check them
#: before quoting a report; a model not listed here is reported without a cost.
PRICES_USD_PER_1M = {"text-embedding-3-small": 0.02, "text-embedding-3-large": 0.13, "text-embedding-ada-002": 0.10}
PRICE_DATE = "2025-01"
OPENAI_URL = "https://api.openai.com/v1"
#: provider: (module, class, pip package) of LlamaIndex embeddings; ``openai`` is served by the openai client
_PROVIDERS = {
    "ollama": ("llama_index.embeddings.ollama", "OllamaEmbedding", "llama-index-embeddings-ollama"),
    "cohere": ("llama_index.embeddings.cohere", "CohereEmbedding", "llama-index-embeddings-cohere"),
    "voyage": ("llama_index.embeddings.voyageai", "VoyageEmbedding", "llama-index-embeddings-voyageai"),
    "mistral": ("llama_index.embeddings.mistralai", "MistralAIEmbedding", "llama-index-embeddings-mistralai"),
    "gemini": ("llama_index.embeddings.google_genai", "GoogleGenAIEmbedding", "llama-index-embeddings-google-genai"),
    "bedrock": ("llama_index.embeddings.bedrock", "BedrockEmbedding", "llama-index-embeddings-bedrock"),
}
_EXAMPLES = "openai:text-embedding-3-small, http://127.0.0.1:8000/v1#MODEL or ollama:nomic-embed-text"


@dataclass(frozen=True)
class BaselineSpec:
    """A parsed ``--baseline``: ``provider`` is ``openai`` (any OpenAI-compatible endpoint) or a LlamaIndex one."""

    spec: str
    provider: str
    model: str  # "" for a server URL without #MODEL: the served model, asked for once
    base_url: str | None = None

    @property
    def endpoint(self) -> str:
        """What the cache keys vectors by, with the model: the URL, or the provider."""
        return (self.base_url or self.provider).rstrip("/")


def is_hosted_spec(value: str) -> bool:
    """True for an ``http(s)://`` URL or a ``provider:model`` spec; False for a model folder, hub id, ``default``.

    Example:
        >>> [is_hosted_spec(v) for v in ("openai:text-embedding-3-small", "http://h/v1", "default", "BAAI/bge-small-en")]
        [True, True, False, False]
    """
    v = value.strip()
    if v.lower().startswith(("http://", "https://")):
        return True
    return split_spec(v) is not None and not Path(v).expanduser().exists()


def parse_baseline(spec: str) -> BaselineSpec:
    """Check a ``--baseline`` spec without any network call: syntax, provider package, API key.

    Args:
        spec: ``URL[#MODEL]``, ``openai:MODEL`` or ``provider:MODEL`` (a LlamaIndex embedding).

    Returns:
        The parsed :class:`BaselineSpec`.

    Raises:
        ConfigError: a one-line message naming what is wrong and how to fix it.

    Example:
        >>> parse_baseline("http://127.0.0.1:8000/v1#bge-small").model
        'bge-small'
    """
    s = (spec or "").strip()
    if s.lower().startswith(("http://", "https://")):
        url, _, model = s.partition("#")
        if not urlsplit(url).hostname:
            raise ConfigError(f"--baseline {spec!r}: no host in the URL; e.g. http://127.0.0.1:8000/v1#MODEL")
        _require_openai(spec)
        return BaselineSpec(s, "openai", model.strip(), url.rstrip("/"))
    provider, model = split_spec(s) or ("", "")
    if not model:
        raise ConfigError(f"--baseline {spec!r}: expected provider:model or an http(s) URL, e.g. {_EXAMPLES}")
    if provider == "openai":
        _require_openai(spec)
        base_url = (os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        if not api_key_for(base_url, BASELINE_KEY):
            if base_url == OPENAI_URL:
                raise ConfigError(f"--baseline {spec!r}: set OPENAI_API_KEY (or {BASELINE_KEY}) to call OpenAI")
            raise ConfigError(f"--baseline {spec!r}: set {BASELINE_KEY} to call {base_url} (OPENAI_BASE_URL); "
                              "OPENAI_API_KEY goes to https://api.openai.com only")
        return BaselineSpec(s, "openai", model, base_url)
    if provider not in _PROVIDERS:
        raise ConfigError(
            f"--baseline {spec!r}: unknown provider {provider!r}; choose openai, {', '.join(_PROVIDERS)} or an http(s) URL"
        )
    _llama_class(provider)  # a missing package fails here, before any long work
    return BaselineSpec(s, provider, model)


def _require_openai(spec: str) -> None:
    optional_import("openai", where=f"--baseline {spec!r}", error=ConfigError)


def _llama_class(provider: str) -> Any:
    module, cls, package = _PROVIDERS[provider]
    return getattr(optional_import(module, where=f"--baseline {provider}:...", package=package, error=ConfigError), cls)


def estimate_tokens(texts: Sequence[str], model: str) -> int:
    """A rough token count (characters / 4) for an API that reports no ``usage``.

    Not tiktoken: it downloads its encoding files on first use, with no timeout,
    which stalls on a machine without internet before any fallback.
    """
    return sum(max(1, len(t) // 4) for t in texts)


class EmbeddingCache:
    """Hosted vectors on disk: (endpoint, model, kind, text sha256) → float32 vector and the text's tokens.

    SQLite (stdlib) rather than numpy files: one file, rows committed after each
    request (an interrupted run keeps what it paid for), looked up by key without
    reading the rest, and safe when two runs share the folder.

    Args:
        folder: where ``embeddings.sqlite`` lives (made when missing).

    Example:
        >>> cache = EmbeddingCache("runs/demo/cache/embeddings")  # doctest: +SKIP
        >>> cache.get("https://api.openai.com/v1", "text-embedding-3-small", "", ["ab12..."])  # doctest: +SKIP
        {}
    """

    FILE = "embeddings.sqlite"

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / self.FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS vectors (endpoint TEXT, model TEXT, kind TEXT, sha256 TEXT, "
                "tokens REAL, vector BLOB, PRIMARY KEY (endpoint, model, kind, sha256)) WITHOUT ROWID"
            )
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"{self.path}: cannot open the embedding cache ({exc})") from exc

    def get(self, endpoint: str, model: str, kind: str, digests: Iterable[str]) -> dict[str, tuple[np.ndarray, float]]:
        """digest → (vector, tokens) for the digests held."""
        digests, out = list(digests), {}
        for i in range(0, len(digests), 500):
            part = digests[i : i + 500]
            rows = self._db.execute(
                f"SELECT sha256, tokens, vector FROM vectors WHERE endpoint=? AND model=? AND kind=? "
                f"AND sha256 IN ({','.join('?' * len(part))})", (endpoint, model, kind, *part),
            )
            out.update({d: (np.frombuffer(v, dtype=np.float32), t) for d, t, v in rows})
        return out

    def put(self, endpoint: str, model: str, kind: str, digests: Sequence[str], vectors: np.ndarray, tokens: Sequence[float]) -> None:
        """Store one request's vectors (committed at once)."""
        rows = [(endpoint, model, kind, d, float(t), np.asarray(v, dtype=np.float32).tobytes())
                for d, v, t in zip(digests, vectors, tokens)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()


class HostedEncoder(Encoder):
    """An :class:`Encoder` whose vectors come from a hosted API, cached on disk; plain mode only.

    Args:
        spec: a ``--baseline`` spec (see :func:`parse_baseline`) or a parsed one.
        cache_dir: folder of the embedding cache (None: no cache, every run pays).
        batch_size: texts per request.
        timeout: seconds per request; the openai client retries failures (``max_retries``).
        max_retries: retries of a failed request (rate limits, 5xx, timeouts).

    Example:
        >>> enc = HostedEncoder("openai:text-embedding-3-small", cache_dir="runs/demo/cache/embeddings")  # doctest: +SKIP
        >>> enc.encode_queries(["battery warranty"]).shape  # doctest: +SKIP
        (1, 1536)
        >>> enc.usage()["cost_usd"]  # doctest: +SKIP
        4e-08
    """

    def __init__(
        self,
        spec: str | BaselineSpec,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 256,
        timeout: float = 120.0,
        max_retries: int = 5,
    ) -> None:
        self.spec = spec if isinstance(spec, BaselineSpec) else parse_baseline(spec)
        self.model = None  # no local model: nothing loads, nothing to fingerprint
        self.batch_size, self.timeout, self.max_retries = batch_size, timeout, max_retries
        self.prompts: dict[str, str] = {}
        self.devices = None
        self._pool = None
        self._windows = None
        self.cache = EmbeddingCache(cache_dir) if cache_dir is not None else None
        self._client: Any = None
        self._model_name = self.spec.model
        self._dim: int | None = None
        self.stats: dict[str, Any] = dict(texts=0, fetched=0, from_cache=0, requests=0, tokens_fetched=0.0,
                                          tokens_cached=0.0, tokens_estimated=False, fetch_s=0.0)

    # --- the Encoder interface -------------------------------------------------
    @property
    def dimension(self) -> int:
        if self._dim is None:
            self.encode(["dimension probe"])
        return int(self._dim or 0)

    @property
    def max_seq_length(self) -> int:
        return READS_ALL

    @property
    def tokenizer(self) -> Any:
        raise ConfigError(f"--baseline {self.spec.spec}: a hosted model has no local tokenizer (plain mode only)")

    def encode_windows(self, texts: Sequence[str], spec: WindowSpec | None = None) -> WindowedVectors:
        raise ConfigError(f"--baseline {self.spec.spec}: a hosted model is scored in plain mode only, without windows")

    def encode(self, texts: Sequence[str], kind: str = "document", normalize: bool = True) -> np.ndarray:
        """``(len(texts), dimension)`` L2-normalised float32 vectors; cached texts are not sent again."""
        if kind not in ("query", "document"):
            raise ValueError(f"kind={kind!r}: choose 'query' or 'document'")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        # OpenAI embeds a query and a document alike; LlamaIndex providers may not (Cohere's input types)
        key_kind = "" if self.spec.provider == "openai" else kind
        digests = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
        unique = dict(zip(digests, texts))
        model_key = self.spec.model
        found = self.cache.get(self.spec.endpoint, model_key, key_kind, unique) if self.cache else {}
        self.stats["from_cache"] += len(found)
        self.stats["tokens_cached"] += sum(t for _, t in found.values())
        missing = [d for d in unique if d not in found]
        starts = range(0, len(missing), self.batch_size)
        for start in track(starts, f"Fetching {self.spec.spec} embeddings", total=len(starts), unit="requests", transient=True):
            part = missing[start : start + self.batch_size]
            batch = [unique[d] for d in part]
            t0 = time.perf_counter()
            vectors, tokens = self._fetch(batch, kind)
            self.stats["fetch_s"] += time.perf_counter() - t0
            vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
            chars = np.asarray([max(1, len(t)) for t in batch], dtype=np.float64)
            shares = tokens * chars / chars.sum()  # the request's tokens, shared out by length
            if self.cache:
                self.cache.put(self.spec.endpoint, model_key, key_kind, part, vectors, shares)
            found.update({d: (v, float(s)) for d, v, s in zip(part, vectors, shares)})
            self.stats.update(fetched=self.stats["fetched"] + len(part), requests=self.stats["requests"] + 1,
                              tokens_fetched=self.stats["tokens_fetched"] + tokens)
        self.stats["texts"] += len(unique)
        out = np.stack([found[d][0] for d in digests]).astype(np.float32, copy=False)
        self._dim = out.shape[1]
        return out

    # --- the APIs -----------------------------------------------------------------
    def _fetch(self, texts: list[str], kind: str) -> tuple[np.ndarray, float]:
        """One request's vectors and its tokens (the API's ``usage``, else an estimate)."""
        texts = [t if t.strip() else " " for t in texts]  # OpenAI refuses empty inputs
        if self.spec.provider != "openai":
            emb = self._llama()
            rows = [emb.get_query_embedding(t) for t in texts] if kind == "query" else emb.get_text_embedding_batch(texts)
            self.stats["tokens_estimated"] = True
            return np.asarray(rows, dtype=np.float32), float(estimate_tokens(texts, self.spec.model))
        import openai

        client = self._openai()
        try:
            resp = client.embeddings.create(model=self._served_model(), input=texts)
        except openai.APIError as exc:
            raise InputError(f"--baseline {self.spec.spec}: the embeddings request failed ({_first_line(exc)})") from exc
        rows = [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
        usage = getattr(resp, "usage", None)
        tokens = getattr(usage, "total_tokens", None) or getattr(usage, "prompt_tokens", None)
        if not tokens:
            self.stats["tokens_estimated"] = True
            tokens = estimate_tokens(texts, self._model_name)
        return np.asarray(rows, dtype=np.float32), float(tokens)

    def _openai(self) -> Any:
        if self._client is None:
            import openai

            url = self.spec.base_url or OPENAI_URL
            self._client = openai.OpenAI(base_url=url, api_key=api_key_for(url, BASELINE_KEY) or NO_KEY,
                                         timeout=self.timeout, max_retries=self.max_retries)
        return self._client

    def _served_model(self) -> str:
        """The model to ask for: the spec's, or (a URL without #MODEL) the server's first listed one."""
        if not self._model_name:
            import openai

            try:
                self._model_name = next(m.id for m in self._openai().models.list())
            except (openai.APIError, StopIteration) as exc:
                raise InputError(f"--baseline {self.spec.spec}: cannot list the served models; name one as URL#MODEL") from exc
        return self._model_name

    def _llama(self) -> Any:
        if self._client is None:
            self._client = _llama_class(self.spec.provider)(model_name=self.spec.model, embed_batch_size=self.batch_size)
        return self._client

    # --- what the report shows ---------------------------------------------------
    def usage(self) -> dict[str, Any]:
        """Texts, requests, tokens, seconds and cost of this encoder's work so far (the report's ``hosted`` entry)."""
        s = self.stats
        model = self._model_name or self.spec.model
        price = PRICES_USD_PER_1M.get(model.removeprefix("openai/"))
        tokens = s["tokens_fetched"] + s["tokens_cached"]
        return {
            "spec": self.spec.spec, "endpoint": self.spec.endpoint, "model": model, "dimension": self._dim,
            "texts": s["texts"], "fetched": s["fetched"], "from_cache": s["from_cache"], "requests": s["requests"],
            "tokens": round(tokens), "tokens_fetched": round(s["tokens_fetched"]),
            "tokens_source": "estimate" if s["tokens_estimated"] else "usage",
            "fetch_s": round(s["fetch_s"], 3),
            "usd_per_1m_tokens": price, "price_date": PRICE_DATE if price is not None else None,
            "cost_usd": None if price is None else round(s["tokens_fetched"] * price / 1e6, 6),
            "cost_usd_uncached": None if price is None else round(tokens * price / 1e6, 6),
            "cache": str(self.cache.path) if self.cache else None,
        }

    def close(self) -> None:
        """Close the cache file."""
        if self.cache is not None:
            self.cache.close()


@contextlib.contextmanager
def hosted_baselines(spec: str | None, cache_dir: str | os.PathLike[str]) -> Iterator[dict[str, HostedEncoder]]:
    """``{BASELINE: HostedEncoder}`` for a ``--baseline`` spec (``{}`` for none), closed on exit.

    The one place a baseline spec becomes the encoder every evaluation scores
    under the ``baseline`` label (``ragtune run`` and ``ragtune evaluate``).
    """
    encoders = {BASELINE: HostedEncoder(spec, cache_dir=cache_dir)} if spec else {}
    try:
        yield encoders
    finally:
        for encoder in encoders.values():
            encoder.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
