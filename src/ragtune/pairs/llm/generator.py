"""The LLM pair generator: an LLM writes the questions each window of the corpus answers.

``LLMGenerator(llm, config)(chunks, tokenizer, spec)`` has the same call
signature as :class:`~ragtune.pairs.offline.OfflineGenerator`, so it plugs into
:func:`ragtune.pairs.generate_pairs`. ``llm`` is any LlamaIndex ``LLM``
(:func:`ragtune.providers.llm_from_spec` builds one from ``openai:gpt-4o-mini`` and
the like). This module sends the requests, caches the answers and turns them
into pairs; reading questions out of an answer is
:mod:`ragtune.pairs.llm.parsing`.

Design decisions, and why:

- **Windows, not chunks** (``window_level=True``): a chunk is often 1024 tokens
  while the encoder reads ~256. Asking about each token window (the same
  windows the offline generator and the index use) makes every pair point at
  the passage that holds its answer, so training matches how chunks are
  searched.
- **Concurrency**: one asyncio event loop, a semaphore of ``max_concurrency``
  over ``llm.acomplete``. LLMs whose ``acomplete`` merely calls the blocking
  ``complete`` (LlamaIndex's ``CustomLLM`` default) run ``complete`` in
  ``max_concurrency`` worker threads instead, so they are concurrent too (for
  those, ``timeout_s`` stops waiting but cannot stop the thread: give the
  client its own request timeout). The call site stays synchronous;
  when it is itself inside a running event loop (a notebook, a server), the
  work runs on a private loop in a helper thread.
- **Retries** (tenacity, which llama-index-core depends on; the LLM may be any
  LlamaIndex LLM, so not every client retries by itself): every exception
  (timeouts included) is retried ``max_retries`` times, waiting ``backoff_s``,
  then twice as long each time. A window keeps
  its concurrency slot while it waits, so a rate-limited endpoint is not hit
  harder by the other windows. An empty answer counts as a failure, since it
  is usually a transient or filtered response.
- **Cache**: each raw answer is stored as soon as it arrives, one JSON file per
  key under ``cache_dir`` (written atomically), keyed by the window text, the
  prompt template, ``questions_per_chunk`` and the LLM's class and model name.
  Raw text is cached, not parsed questions, so parsing and junk rules can
  change without paying again.
- **Permanent failures raise**: when some windows still fail after their
  retries, the generator finishes the other windows (their answers go into the
  cache), then raises :class:`~ragtune.errors.RagtuneError` naming how many
  failed. Returning the partial set instead would silently skew training
  toward the windows that happened to succeed; with the cache, re-running
  resumes and asks only for the missing windows. After ``max_failures``
  permanent failures, windows not yet started are skipped: a dead endpoint or
  a bad API key should not cost one doomed request per window.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune._io import write_json
from ragtune.corpus.reader import Chunk
from ragtune.encoders.windows import WindowSpec, batch_window_spans
from ragtune.errors import ConfigError, RagtuneError
from ragtune.pairs.llm.config import DEFAULT_PROMPT, FEW_SHOT_PROMPT, LLMConfig, LLMStats
from ragtune.pairs.llm.parsing import screen_questions, split_candidates
from ragtune.pairs.schema import Pair
from ragtune.progress import track

if TYPE_CHECKING:  # pragma: no cover - typing only
    from llama_index.core.llms import LLM

log = logging.getLogger(__name__)

__all__ = ["CACHE_VERSION", "LLMGenerator", "llm_identity"]

#: Bump when the cache key recipe changes, so old entries are not misread.
CACHE_VERSION = "ragtune-llm-pairs/v1"


@dataclass
class _Window:
    chunk: Chunk
    span: tuple[int, int] | None
    text: str
    key: str


class LLMGenerator:
    """Callable: ``LLMGenerator(llm, config)(chunks, tokenizer, spec) -> list[Pair]``.

    Pairs come out in corpus order (chunk, window, question), whatever order
    the answers arrive in. :attr:`stats` describes the last call.
    """

    name = "llm"

    def __init__(self, llm: LLM, config: LLMConfig | None = None) -> None:
        if not callable(getattr(llm, "acomplete", None)) and not callable(
            getattr(llm, "complete", None)
        ):
            raise ConfigError(
                f"llm={type(llm).__name__}: not a LlamaIndex LLM (no complete/acomplete method)"
            )
        self.llm = llm
        self.config = config or LLMConfig()
        self.stats = LLMStats()
        self._identity = llm_identity(llm)
        # An LLM that writes better questions continuing a list than following an instruction
        # (ragtune's LocalLLM: small GGUF models) gets FEW_SHOT_PROMPT, sent without a chat
        # template, unless the user chose a prompt of their own.
        self._few_shot = bool(getattr(llm, "few_shot_questions", False)) and self.config.prompt == DEFAULT_PROMPT
        self.template = FEW_SHOT_PROMPT if self._few_shot else self.config.prompt
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # public ----------------------------------------------------------------
    def __call__(
        self,
        chunks: Sequence[Chunk],
        tokenizer: Any,
        spec: WindowSpec,
    ) -> list[Pair]:
        self.stats = LLMStats()
        windows = self._windows(chunks, tokenizer, spec)
        answers = self._cached_answers(windows)
        todo = _unique_by_key(w for w in windows if w.key not in answers)
        self.stats.requests = len(todo)
        if todo:
            outcome = _run_sync(self._ask_all(todo))
            answers.update(outcome.answers)
            if outcome.failed:
                raise RagtuneError(self._failure_message(outcome, len(todo)))
        return self._pairs(windows, answers)

    def cache_path(self, key: str) -> Path | None:
        """Where the answer for ``key`` is cached (None without ``cache_dir``)."""
        if self.config.cache_dir is None:
            return None
        return Path(self.config.cache_dir) / key[:2] / f"{key}.json"

    def cache_key(self, text: str) -> str:
        """sha256 of everything that changes the answer: passage, prompt, count, LLM."""
        cfg = self.config
        material = [CACHE_VERSION, self._identity, self.template, cfg.questions_per_chunk, text]
        return hashlib.sha256(json.dumps(material, ensure_ascii=False).encode("utf-8")).hexdigest()

    # windows ---------------------------------------------------------------
    def _windows(self, chunks: Sequence[Chunk], tokenizer: Any, spec: WindowSpec) -> list[_Window]:
        if self.config.window_level:
            spans = batch_window_spans([c.text for c in chunks], tokenizer, spec) if chunks else []
        else:
            spans = [[None] for _ in chunks]
        out: list[_Window] = []
        for chunk, chunk_spans in zip(chunks, spans):
            for span in chunk_spans:
                text = chunk.text if span is None else chunk.text[span[0] : span[1]]
                if not text.strip():
                    self.stats.empty_windows += 1
                    continue
                out.append(_Window(chunk, span, text, self.cache_key(text)))
        self.stats.windows = len(out)
        return out

    # cache -----------------------------------------------------------------
    def _cached_answers(self, windows: Sequence[_Window]) -> dict[str, str]:
        answers: dict[str, str] = {}
        for w in windows:
            if w.key in answers:
                self.stats.cache_hits += 1
                continue
            answer = self._read_cache(w.key)
            if answer is not None:
                answers[w.key] = answer
                self.stats.cache_hits += 1
        return answers

    def _read_cache(self, key: str) -> str | None:
        path = self.cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            answer = entry["answer"]
            if not isinstance(answer, str):
                raise TypeError("'answer' is not a string")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable LLM cache entry %s (%s); asking again", path, exc)
            return None
        return answer

    def _write_cache(self, key: str, answer: str) -> None:
        path = self.cache_path(key)
        if path is not None:
            write_json(path, {"version": CACHE_VERSION, "llm": self._identity, "answer": answer})

    # requests --------------------------------------------------------------
    async def _ask_all(self, todo: Sequence[_Window]) -> _Outcome:
        outcome = _Outcome()
        sem = asyncio.Semaphore(self.config.max_concurrency)
        # A blocking LLM gets its own pool, as wide as max_concurrency (asyncio's default
        # pool is sized by CPU count), left without waiting so a hung call cannot hold the run.
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(
                max_workers=self.config.max_concurrency, thread_name_prefix="ragtune-llm"
            )
            if _blocking_acomplete(self.llm)
            else None
        )
        tasks = [asyncio.ensure_future(self._ask_window(w, sem, outcome)) for w in todo]
        try:
            for task in track(tasks, "Asking the LLM", unit="requests"):
                await task
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        return outcome

    async def _ask_window(self, w: _Window, sem: asyncio.Semaphore, outcome: _Outcome) -> None:
        cfg = self.config
        async with sem:
            if outcome.stopped(cfg.max_failures):
                self.stats.skipped += 1
                return
            try:
                answer = await self._retrying(outcome)(self._complete, cfg.render(w.text, self.template))
            except Exception:  # noqa: BLE001 - any provider error, after its retries, fails this window only
                self.stats.failures += 1
                outcome.failed += 1
                log.warning(
                    "LLM request for chunk %s failed after %d attempt(s): %s",
                    w.chunk.id,
                    cfg.max_retries + 1,
                    _describe(outcome.last_error),
                )
                return
            self._write_cache(w.key, answer)
            outcome.answers[w.key] = answer

    def _retrying(self, outcome: _Outcome) -> Any:
        """tenacity's retry of one request: any exception, ``max_retries`` times, waiting ``backoff_s`` then doubling."""
        from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential

        def failed(state: Any) -> None:  # after every failed attempt, the last one included
            outcome.last_error = state.outcome.exception()
            if isinstance(outcome.last_error, asyncio.TimeoutError):
                self.stats.timeouts += 1

        def retrying(state: Any) -> None:  # before each wait
            self.stats.retries += 1
            exc = state.outcome.exception()
            log.debug("LLM request failed (%s: %s); retry %d", type(exc).__name__, exc, state.attempt_number)

        return AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=wait_exponential(multiplier=self.config.backoff_s, exp_base=2),
            after=failed,
            before_sleep=retrying,
            reraise=True,
        )

    async def _complete(self, prompt: str) -> str:
        self.stats.calls += 1
        call: Awaitable[Any]
        # formatted=True: LlamaIndex's flag for "already formatted, add no chat template"
        how = {"formatted": True} if self._few_shot else {}
        if self._pool is not None:
            call = asyncio.get_running_loop().run_in_executor(
                self._pool, functools.partial(self.llm.complete, prompt, **how)
            )
        else:
            call = self.llm.acomplete(prompt, **how)
        response = await asyncio.wait_for(call, timeout=self.config.timeout_s)
        text = getattr(response, "text", response)
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the LLM returned an empty answer")
        return text

    def _failure_message(self, outcome: _Outcome, total: int) -> str:
        cfg = self.config
        msg = (
            f"{outcome.failed} of {total} LLM requests failed after {cfg.max_retries} retries "
            f"(last error: {_describe(outcome.last_error)})"
        )
        if self.stats.skipped:
            msg += f"; stopped after max_failures={cfg.max_failures}, {self.stats.skipped} not attempted"
        if cfg.cache_dir is not None:
            msg += (
                f". {len(outcome.answers)} new answers are kept in the cache {cfg.cache_dir}: "
                "re-run to resume, only the windows without an answer will be requested"
            )
        else:
            msg += (
                ". Set cache_dir so that a re-run resumes instead of paying again for every window"
            )
        return msg

    # pairs -----------------------------------------------------------------
    def _pairs(self, windows: Sequence[_Window], answers: dict[str, str]) -> list[Pair]:
        cfg = self.config
        dropped: Counter[str] = Counter()
        pairs: list[Pair] = []
        for w in windows:
            candidates = split_candidates(answers[w.key])
            self.stats.parsed += len(candidates)
            kept, why = screen_questions(
                candidates, cfg.min_query_words, cfg.max_query_words, limit=cfg.questions_per_chunk
            )
            dropped.update(why)
            for q in kept:
                pairs.append(
                    Pair(
                        query=q,
                        positive=w.text,
                        positive_id=w.chunk.id,
                        source="llm",
                        score=None,
                        doc_id=w.chunk.doc_id,
                        window=w.span,
                    )
                )
        self.stats.kept = len(pairs)
        self.stats.dropped = dict(sorted(dropped.items()))
        return pairs


@dataclass
class _Outcome:
    answers: dict[str, str] = field(default_factory=dict)
    failed: int = 0
    last_error: BaseException | None = None

    def stopped(self, max_failures: int | None) -> bool:
        return max_failures is not None and self.failed >= max_failures


def _unique_by_key(windows: Any) -> list[_Window]:
    """One request per distinct passage: identical windows share an answer."""
    seen: dict[str, _Window] = {}
    for w in windows:
        seen.setdefault(w.key, w)
    return list(seen.values())


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "none"
    if isinstance(exc, asyncio.TimeoutError) and not str(exc).strip():
        return "TimeoutError: no answer within timeout_s"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _blocking_acomplete(llm: Any) -> bool:
    """True when ``acomplete`` is LlamaIndex's CustomLLM default, which blocks on ``complete``."""
    try:
        from llama_index.core.llms import CustomLLM
    except ImportError:  # pragma: no cover - llama-index-core is a dependency
        return False
    if not isinstance(llm, CustomLLM):
        return False
    # The class that defines acomplete (attribute access returns a fresh wrapper each time).
    owner = next(k for k in type(llm).__mro__ if "acomplete" in vars(k))
    return owner is CustomLLM


def _run_sync(coro: Any) -> Any:
    """Run a coroutine from synchronous code, even when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="ragtune-llm"
    ) as pool:
        return pool.submit(asyncio.run, coro).result()


def llm_identity(llm: Any) -> str:
    """``ClassName:model`` — the part of the cache key that names the LLM."""
    try:
        model = getattr(llm.metadata, "model_name", None) or "unknown"
    except Exception:  # noqa: BLE001 - metadata may be computed lazily and fail offline
        model = getattr(llm, "model", None) or "unknown"
    return f"{type(llm).__name__}:{model}"
