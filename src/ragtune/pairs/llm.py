"""The LLM pair generator: an LLM writes the questions each window of the corpus answers.

``LLMGenerator(llm, config)(chunks, tokenizer, spec)`` has the same call
signature as :class:`~ragtune.pairs.offline.OfflineGenerator`, so it plugs into
:func:`ragtune.pairs.generate_pairs`. ``llm`` is any LlamaIndex ``LLM``
(:func:`llm_from_spec` builds one from ``openai:gpt-4o-mini`` and the like).

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
- **Retries**: every exception (timeouts included) is retried ``max_retries``
  times, waiting ``backoff_s``, then twice as long each time. A window keeps
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
- **Junk is dropped and counted** (:attr:`LLMGenerator.stats`): preambles
  ("Here are 2 questions:"), lines that are not questions, too short or too
  long ones, duplicates within a window, and questions beyond the number asked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune._io import Progress, write_json
from ragtune.corpus import Chunk
from ragtune.errors import ConfigError, RagtuneError
from ragtune.pairs.schema import Pair
from ragtune.pairs.text import normalize_query, words
from ragtune.windows import WindowSpec, batch_window_spans

if TYPE_CHECKING:  # pragma: no cover - typing only
    from llama_index.core.llms import LLM

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PROMPT",
    "LLMConfig",
    "LLMGenerator",
    "LLMStats",
    "llm_from_spec",
    "llm_identity",
    "parse_questions",
    "screen_questions",
    "split_candidates",
]

#: Bump when the cache key recipe changes, so old entries are not misread.
CACHE_VERSION = "ragtune-llm-pairs/v1"

#: Modelled on LlamaIndex's ``generate_qa_embedding_pairs`` prompt, but asks for
#: what a *user* would ask (retrieval queries), not exam questions, and for a
#: plain one-per-line answer that :func:`parse_questions` reads reliably.
DEFAULT_PROMPT = """\
Context information is below.

---------------------
{context}
---------------------

Using only the context above and no prior knowledge, write {num_questions} \
questions that a user searching a document collection might ask and that this \
context answers. Each question must make sense on its own: name the specific \
subject instead of saying "the context", "the passage" or "this document". \
Ask about different facts, and vary the wording.

Write one question per line and nothing else: no introduction, no answers, \
no numbering required.
"""

_CONTEXT_KEYS = ("{context}", "{context_str}")
_NUM_KEYS = ("{num_questions}", "{num_questions_per_chunk}")


# --------------------------------------------------------------------------- config
@dataclass
class LLMConfig:
    """Knobs of the LLM generator; every field is checked when the config is made.

    ``prompt`` is a template with ``{context}`` and ``{num_questions}``
    (LlamaIndex's ``{context_str}`` / ``{num_questions_per_chunk}`` work too).
    Placeholders are replaced literally, so other braces (a JSON example) need
    no escaping. ``timeout_s=None`` waits forever; ``max_failures=None`` never
    stops early. ``cache_dir=None`` disables the cache (a failed run then pays
    again for everything).
    """

    questions_per_chunk: int = 2
    prompt: str = DEFAULT_PROMPT
    max_concurrency: int = 4
    max_retries: int = 3
    backoff_s: float = 1.0
    timeout_s: float | None = 120.0
    min_query_words: int = 3
    max_query_words: int = 64
    cache_dir: str | Path | None = None
    window_level: bool = True
    max_failures: int | None = 10

    def __post_init__(self) -> None:
        _check_int(
            "questions_per_chunk", self.questions_per_chunk, 1, hint="ask for at least one question"
        )
        _check_int(
            "max_concurrency", self.max_concurrency, 1, hint="use 1 for one request at a time"
        )
        _check_int("max_retries", self.max_retries, 0, hint="use 0 to never retry")
        _check_number("backoff_s", self.backoff_s, 0.0, hint="use 0 to retry at once")
        if self.timeout_s is not None:
            _check_number(
                "timeout_s", self.timeout_s, 0.0, strict=True, hint="or None to wait forever"
            )
        _check_int("min_query_words", self.min_query_words, 1)
        _check_int(
            "max_query_words",
            self.max_query_words,
            self.min_query_words,
            hint="must be >= min_query_words",
        )
        if self.max_failures is not None:
            _check_int("max_failures", self.max_failures, 1, hint="or None to never stop early")
        if not isinstance(self.window_level, bool):
            raise ConfigError(f"window_level={self.window_level!r}: must be True or False")
        self._check_prompt()
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, Path)) or not str(self.cache_dir).strip():
                raise ConfigError(f"cache_dir={self.cache_dir!r}: must be a folder path or None")
            self.cache_dir = Path(self.cache_dir)
            if self.cache_dir.exists() and not self.cache_dir.is_dir():
                raise ConfigError(
                    f"cache_dir={str(self.cache_dir)!r}: is a file; give a folder path"
                )

    def _check_prompt(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ConfigError(f"prompt={self.prompt!r}: must be a non-empty template string")
        shown = self.prompt if len(self.prompt) <= 60 else self.prompt[:57] + "..."
        if not any(k in self.prompt for k in _CONTEXT_KEYS):
            raise ConfigError(
                f"prompt={shown!r}: has no {{context}} placeholder; add one where the passage goes"
            )
        if not any(k in self.prompt for k in _NUM_KEYS):
            raise ConfigError(
                f"prompt={shown!r}: has no {{num_questions}} placeholder; add one so the LLM "
                f"is told how many questions to write (questions_per_chunk={self.questions_per_chunk})"
            )

    def render(self, context: str) -> str:
        """The prompt for one passage (the count first, so a passage's own braces stay intact)."""
        text = self.prompt
        for key in _NUM_KEYS:
            text = text.replace(key, str(self.questions_per_chunk))
        for key in _CONTEXT_KEYS:
            text = text.replace(key, context)
        return text


def _check_int(name: str, value: Any, minimum: int, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = f" ({hint})" if hint else ""
        raise ConfigError(f"{name}={value!r}: must be an integer >= {minimum}{extra}")


def _check_number(
    name: str, value: Any, minimum: float, strict: bool = False, hint: str = ""
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > minimum if strict else value >= minimum) and not math.isnan(value)
    if not ok:
        rel = ">" if strict else ">="
        extra = f" ({hint})" if hint else ""
        raise ConfigError(f"{name}={value!r}: must be a number {rel} {minimum:g}{extra}")


# --------------------------------------------------------------------------- stats
@dataclass
class LLMStats:
    """What the last run did; :func:`ragtune.pairs.generate_pairs` reads ``windows``.

    ``calls`` counts every request sent (retries included), ``cache_hits``
    windows answered from the cache, ``failures`` windows that failed after all
    retries, ``skipped`` windows not attempted because ``max_failures`` was
    reached. ``parsed`` counts candidate lines read from answers, ``kept`` the
    questions that became pairs, ``dropped`` the rest by reason.
    """

    windows: int = 0
    empty_windows: int = 0
    requests: int = 0
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    timeouts: int = 0
    failures: int = 0
    skipped: int = 0
    parsed: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- parsing
_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_BULLET_RE = re.compile(r"^(?:[-*•·‣◦▪–—+>]+)\s*")
_NUMBER_RE = re.compile(
    r"^(?:(?:\(?\d{1,3}[.):\]]|\(?[a-z]\))(?=\s|$)|\d{1,3}\s*[-–](?=\s))\s*", re.IGNORECASE
)
_QPREFIX_RE = re.compile(
    r"^(?:q(?:uestion)?|query)\s*#?\s*\d{0,3}\s*(?:[:.)]|[-–](?=\s))\s*", re.IGNORECASE
)
_HEADING_RE = re.compile(r"^#{1,6}\s+")
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`", "«": "»"}
_WRAPPERS = {**_QUOTES, "*": "*", "_": "_"}  # quotes and Markdown emphasis around a whole line
_ANSWER_TAIL_RE = re.compile(r"(\?)\s+(?:A|Answer)\s*:\s.*$", re.IGNORECASE)

_PREAMBLE_RE = re.compile(
    r"^(?:here\s+(?:are|is)|here's|sure\b|certainly\b|of course\b|okay\b|ok\b|below\s+(?:are|is)|"
    r"the following\b|based on the (?:context|passage|text)|i hope\b|these questions\b)",
    re.IGNORECASE,
)
#: A line without "?" still counts as a question when it starts with one of these.
_QUESTION_WORDS = """\
what how why when where which who whom whose is are was were does do did can could should
would will may might must has have had shall describe explain list name identify summarize
summarise compare define outline give state find show tell
"""
QUESTION_STARTS = frozenset(_QUESTION_WORDS.split())


def split_candidates(text: str) -> list[str]:
    """Candidate questions in an LLM answer, cleaned but not yet judged.

    Reads JSON (a list of strings, or an object with a ``questions`` list,
    possibly inside a code fence or after a preamble) and otherwise one
    candidate per line. Numbering, bullets, ``Q1:``/``Question:`` prefixes,
    Markdown emphasis and surrounding quotes are stripped. Lines are never
    joined: a question wrapped over two lines gives two fragments, which the
    junk screen then drops, rather than a guessed merge.
    """
    if not isinstance(text, str) or not text.strip():
        return []
    from_json = _json_questions(text)
    raw = from_json if from_json is not None else text.splitlines()
    out: list[str] = []
    for line in raw:
        if from_json is None and (not line.strip() or line.strip().startswith("```")):
            continue  # layout, not content
        out.append(_clean(line))
    return out


def _json_questions(text: str) -> list[str] | None:
    """The questions of a JSON answer, or None when the answer is not JSON."""
    blocks = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for block in blocks:
        for m in re.finditer(r"^[ \t]*([\[{])", block, re.MULTILINE):
            try:
                obj, _ = decoder.raw_decode(block, m.start(1))
            except json.JSONDecodeError:
                continue
            found = _questions_in(obj)
            if found is not None:
                return found
    return None


def _questions_in(obj: Any) -> list[str] | None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if str(key).lower() in ("questions", "queries", "question_list"):
                return _questions_in(value)
        values = list(obj.values())
        if values and all(isinstance(v, str) for v in values):  # {"q1": "...", "q2": "..."}
            return values
        return None
    if isinstance(obj, list):
        out = []
        for item in obj:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict):
                text = next(
                    (
                        item[k]
                        for k in ("question", "query", "text")
                        if isinstance(item.get(k), str)
                    ),
                    None,
                )
                if text is not None:
                    out.append(text)
        return out if out or not obj else None
    return None


def _clean(line: str) -> str:
    """Strip list markers, prefixes, emphasis and quotes until nothing changes."""
    s = line.replace("**", "").replace("__", "")
    while True:
        before = s
        s = s.strip().rstrip(",").strip()
        if len(s) >= 2 and s[0] in _WRAPPERS and s.endswith(_WRAPPERS[s[0]]):
            s = s[1:-1].strip()
        s = _HEADING_RE.sub("", s)
        s = _BULLET_RE.sub("", s)
        s = _NUMBER_RE.sub("", s)
        s = _QPREFIX_RE.sub("", s)
        if s.startswith("[") and s[1:2] in _QUOTES:  # a line of broken JSON: ["What ...?",
            s = s[1:]
        if s.endswith("]") and s[-2:-1] in _QUOTES.values():
            s = s[:-1]
        s = _strip_unbalanced_quote(s.strip().rstrip(",").strip())
        s = s.strip().rstrip(",").strip()
        if s == before:
            break
    return _ANSWER_TAIL_RE.sub(r"\1", s).strip()


def _strip_unbalanced_quote(s: str) -> str:
    """Drop an opening quote that never closes (or a closing one never opened): cut-off JSON."""
    if s[:1] in _QUOTES and _QUOTES[s[0]] not in s[1:]:
        return s[1:]
    closers = {v: k for k, v in _QUOTES.items()}
    if s[-1:] in closers and closers[s[-1]] not in s[:-1]:
        return s[:-1]
    return s


def _is_question(q: str) -> bool:
    if "?" in q:
        return True
    first = q.split(maxsplit=1)[0].strip("\"'“‘(,:;").lower() if q.split() else ""
    return first in QUESTION_STARTS


def screen_questions(
    candidates: Sequence[str],
    min_words: int = 3,
    max_words: int = 64,
    limit: int | None = None,
) -> tuple[list[str], Counter[str]]:
    """Keep real questions; return them and ``{reason: count}`` for the rest.

    Reasons: ``empty``, ``preamble`` ("Here are 2 questions:"), ``too_short``,
    ``too_long``, ``not_question`` (no "?" and no interrogative or imperative
    first word), ``duplicate`` (same words as an earlier one), ``extra``
    (beyond ``limit``, the number asked for).
    """
    kept: list[str] = []
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    for q in candidates:
        reason = _junk_reason(q, min_words, max_words)
        if reason is None:
            norm = normalize_query(q)
            if norm in seen:
                reason = "duplicate"
            elif limit is not None and len(kept) >= limit:
                reason = "extra"
            else:
                seen.add(norm)
                kept.append(q)
                continue
        dropped[reason] += 1
    return kept, dropped


def _junk_reason(q: str, min_words: int, max_words: int) -> str | None:
    if not q.strip():
        return "empty"
    if "?" not in q and (q.rstrip().endswith(":") or _PREAMBLE_RE.match(q)):
        return "preamble"
    n = len(words(q))
    if n < min_words:
        return "too_short"
    if n > max_words:
        return "too_long"
    if not _is_question(q):
        return "not_question"
    return None


def parse_questions(text: str, min_words: int = 3, max_words: int = 64) -> list[str]:
    """The questions in an LLM answer, whatever its format, junk removed.

    >>> parse_questions('Here are 2 questions:\\n1. What does a pass cost?\\n2) "How late do trams run?"')
    ['What does a pass cost?', 'How late do trams run?']
    """
    return screen_questions(split_candidates(text), min_words, max_words)[0]


# --------------------------------------------------------------------------- generator
@dataclass
class _Window:
    chunk: Chunk
    span: tuple[int, int] | None
    text: str
    key: str


class LLMGenerator:
    """Callable: ``LLMGenerator(llm, config)(chunks, tokenizer, spec, progress=None) -> list[Pair]``.

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
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # public ----------------------------------------------------------------
    def __call__(
        self,
        chunks: Sequence[Chunk],
        tokenizer: Any,
        spec: WindowSpec,
        progress: Progress | None = None,
    ) -> list[Pair]:
        self.stats = LLMStats()
        windows = self._windows(chunks, tokenizer, spec)
        answers = self._cached_answers(windows)
        todo = _unique_by_key(w for w in windows if w.key not in answers)
        self.stats.requests = len(todo)
        if todo:
            outcome = _run_sync(self._ask_all(todo, progress))
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
        material = [CACHE_VERSION, self._identity, cfg.prompt, cfg.questions_per_chunk, text]
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
    async def _ask_all(self, todo: Sequence[_Window], progress: Progress | None) -> _Outcome:
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
            for task in progress(tasks, "Asking the LLM") if progress else tasks:
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
            prompt = cfg.render(w.text)
            for attempt in range(cfg.max_retries + 1):
                try:
                    answer = await self._complete(prompt)
                except Exception as exc:  # noqa: BLE001 - any provider error is worth a retry
                    if isinstance(exc, asyncio.TimeoutError):
                        self.stats.timeouts += 1
                    outcome.last_error = exc
                    if attempt == cfg.max_retries:
                        break
                    self.stats.retries += 1
                    log.debug(
                        "LLM request failed (%s: %s); retry %d",
                        type(exc).__name__,
                        exc,
                        attempt + 1,
                    )
                    await asyncio.sleep(cfg.backoff_s * 2**attempt)
                    continue
                self._write_cache(w.key, answer)
                outcome.answers[w.key] = answer
                return
        self.stats.failures += 1
        outcome.failed += 1
        log.warning(
            "LLM request for chunk %s failed after %d attempt(s): %s",
            w.chunk.id,
            cfg.max_retries + 1,
            _describe(outcome.last_error),
        )

    async def _complete(self, prompt: str) -> str:
        self.stats.calls += 1
        call: Awaitable[Any]
        if self._pool is not None:
            call = asyncio.get_running_loop().run_in_executor(
                self._pool, functools.partial(self.llm.complete, prompt)
            )
        else:
            call = self.llm.acomplete(prompt)
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


# --------------------------------------------------------------------------- LLM from a spec
_PROVIDERS: dict[str, tuple[str, str, str]] = {
    # provider: (module, class, pip package)
    "openai": ("llama_index.llms.openai", "OpenAI", "llama-index-llms-openai"),
    "ollama": ("llama_index.llms.ollama", "Ollama", "llama-index-llms-ollama"),
    "openai-like": ("llama_index.llms.openai_like", "OpenAILike", "llama-index-llms-openai-like"),
}
_SPEC_EXAMPLES = "openai:gpt-4o-mini, ollama:llama3.1 or openai-like:MODEL@http://localhost:8000/v1"


def llm_from_spec(spec: str, **kwargs: Any) -> LLM:
    """A LlamaIndex LLM from a CLI spec ``provider:model``.

    ``openai:gpt-4o-mini`` (key from ``OPENAI_API_KEY``), ``ollama:llama3.1``
    (a local Ollama server; model tags with colons such as ``llama3.1:8b``
    work), ``openai-like:MODEL@BASE_URL`` (vLLM, llama.cpp, LM Studio...).
    ``kwargs`` go to the LLM class (``temperature=...``). The provider packages
    are optional: a missing one raises :class:`ConfigError` naming what to install.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"llm spec {spec!r}: expected provider:model, e.g. {_SPEC_EXAMPLES}")
    provider, _, model = spec.partition(":")
    provider, model = provider.strip().lower(), model.strip()
    if provider not in _PROVIDERS:
        raise ConfigError(
            f"llm spec {spec!r}: unknown provider {provider!r}; choose from {', '.join(_PROVIDERS)} "
            f"(e.g. {_SPEC_EXAMPLES}), or build a LlamaIndex LLM in Python and pass it to LLMGenerator"
        )
    if provider == "openai-like":
        model, _, base_url = model.partition("@")
        model, base_url = model.strip(), base_url.strip()
        if not base_url:
            raise ConfigError(
                f"llm spec {spec!r}: openai-like needs MODEL@BASE_URL, e.g. qwen2.5@http://localhost:8000/v1"
            )
    if not model:
        raise ConfigError(
            f"llm spec {spec!r}: no model name after '{provider}:'; e.g. {_SPEC_EXAMPLES}"
        )
    cls = _import_provider(provider)
    if provider == "openai-like":
        kwargs.setdefault("api_base", base_url)
        kwargs.setdefault("is_chat_model", True)
        kwargs.setdefault("api_key", _env_or("OPENAI_API_KEY", "unused"))  # local servers need none
    return cls(model=model, **kwargs)


def _import_provider(provider: str) -> Callable[..., LLM]:
    module_name, class_name, package = _PROVIDERS[provider]
    try:
        import importlib

        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the {provider!r} LLM provider needs {package}, which is not installed: "
            f'pip install "ragtune[llm]" (or pip install {package})'
        ) from exc
    return getattr(module, class_name)


def _env_or(name: str, default: str) -> str:
    import os

    return os.environ.get(name) or default
