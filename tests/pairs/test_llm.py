"""The LLM pair generator: parsing, junk, caching, resume, retries, concurrency, config.

No LLM runs on the test machine and there is no network, so every test that
exercises the generator uses ``ScriptedLLM`` below: a deterministic LlamaIndex
``CustomLLM`` that counts its calls and writes two questions from the words of
the passage it is given, in a messy format (numbered, bulleted, JSON in a
fence, ``Q1:`` prefixes, preambles, junk and duplicate lines) chosen by a hash
of the passage, so a passage always gets the same answer whatever the order of
calls. Everything else is real: the tiny corpus chunks, the bundled model's
tokenizer, the token windows and the on-disk cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import threading
from collections import Counter
from typing import Any

import pytest
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata

from ragtune.encoders.windows import WindowSpec, batch_window_spans
from ragtune.errors import ConfigError, RagtuneError
from ragtune.pairs import generate_pairs
from ragtune.pairs.llm import (
    DEFAULT_PROMPT,
    LLMConfig,
    LLMGenerator,
    parse_questions,
    screen_questions,
    split_candidates,
)
from ragtune.providers import llm_from_spec

SPEC = WindowSpec(60, 45)
SEP = "---------------------"


# --------------------------------------------------------------------------- the scripted LLM
def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)


def context_of(prompt: str) -> str:
    """The passage inside a prompt built from ``DEFAULT_PROMPT`` (between the dashed lines)."""
    return prompt.split(SEP)[1].strip("\n")


def expected_questions(context: str) -> list[str]:
    """The two questions ``ScriptedLLM`` writes for ``context``, built from its own words."""
    found: list[str] = []
    for w in re.findall(r"[A-Za-z]{4,}", context):
        if w.lower() not in {x.lower() for x in found}:
            found.append(w)
    found += ["service", "platform", "ticket", "depot"]  # passages with few long words
    a, b, c, d = found[:4]
    return [f"What does the passage say about {a} and {b}?", f"How is {c} related to {d}?"]


def messy_answer(context: str) -> str:
    """Two good questions wrapped in one of five messy formats, with junk lines."""
    q1, q2 = expected_questions(context)
    style = _digest(context) % 5
    if style == 0:
        return f"Here are 2 questions based on the context:\n\n1. {q1}\n2) {q2}\n"
    if style == 1:
        return f"- {q1}\n* {q2}\n• Why?\nThe passage is about public transport.\nI hope these help!"
    if style == 2:
        return "Sure!\n```json\n" + json.dumps({"questions": [q1, q2]}, indent=2) + "\n```"
    if style == 3:
        return f"Q1: {q1} A: see the timetable\nQuestion 2: {q2}\nQuestion 3: {q1}"
    return json.dumps([q1, q2, "What else could a rider ask about it?"])


class ScriptedLLM(CustomLLM):
    """Deterministic stand-in for an LLM (no LLM runs in tests): answers from the passage's words.

    ``fail_first`` makes every passage fail that many times before it is
    answered; ``fail_mod`` makes passages whose hash is divisible by it fail
    for good; ``empty_first`` answers "" that many times first.
    """

    model_name: str = "scripted-1"
    fail_first: int = 0
    fail_mod: int = 0
    empty_first: int = 0
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _attempts: Counter = PrivateAttr(default_factory=Counter)
    _answered: list = PrivateAttr(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model_name)

    @property
    def calls(self) -> int:
        return sum(self._attempts.values())

    @property
    def answered(self) -> list[str]:
        return list(self._answered)

    def attempted(self) -> set[str]:
        return set(self._attempts)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        context = context_of(prompt)
        with self._lock:
            self._attempts[context] += 1
            n = self._attempts[context]
        if self.fail_mod and _digest(context) % self.fail_mod == 0:
            raise ConnectionError("scripted permanent outage for this passage")
        if n <= self.fail_first:
            raise ConnectionError(f"scripted transient failure {n}")
        if n <= self.empty_first:
            return CompletionResponse(text="  ")
        with self._lock:
            self._answered.append(context)
        return CompletionResponse(text=messy_answer(context))

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        raise NotImplementedError("not used by ragtune")


class AsyncScriptedLLM(ScriptedLLM):
    """ScriptedLLM with a real ``acomplete`` that yields to the loop and records peak concurrency."""

    _in_flight: int = PrivateAttr(default=0)
    _peak: int = PrivateAttr(default=0)

    @property
    def peak(self) -> int:
        return self._peak

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)  # a yield, not a wait: lets the other requests start
            return self.complete(prompt)
        finally:
            self._in_flight -= 1


class BarrierLLM(ScriptedLLM):
    """ScriptedLLM (no LLM runs in tests) whose first four calls wait for each other.

    They only get through if four blocking ``complete`` calls really run at the
    same time; the barrier's timeout only turns a regression into a failure.
    """

    _barrier: Any = PrivateAttr(default_factory=lambda: threading.Barrier(4, timeout=10))
    _arrivals: int = PrivateAttr(default=0)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        with self._lock:
            self._arrivals += 1
            first_four = self._arrivals <= 4
        if first_four:
            self._barrier.wait()
        return super().complete(prompt, formatted, **kwargs)


class HangingLLM(ScriptedLLM):
    """An LLM that never answers (stand-in for a stuck endpoint; no LLM runs in tests)."""

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        with self._lock:
            self._attempts[context_of(prompt)] += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def tokenizer(st_model):
    return st_model.tokenizer


@pytest.fixture(scope="module")
def windows(tiny_chunks, tokenizer):
    """Every (chunk, span) the generator should ask about, in corpus order."""
    spans = batch_window_spans([c.text for c in tiny_chunks], tokenizer, SPEC)
    return [(c, s) for c, ss in zip(tiny_chunks, spans) for s in ss]


def config(**kw: Any) -> LLMConfig:
    kw.setdefault("backoff_s", 0.0)
    return LLMConfig(**kw)


def run(llm, chunks, tokenizer, **kw):
    gen = LLMGenerator(llm, config(**kw))
    return gen, gen(chunks, tokenizer, SPEC)


def as_rows(pairs) -> list[dict]:
    return [p.to_dict() for p in pairs]


@pytest.fixture(scope="module")
def baseline(tiny_chunks, tokenizer):
    """One plain run with the default config (no cache)."""
    llm = ScriptedLLM()
    gen, pairs = run(llm, tiny_chunks, tokenizer)
    return llm, gen, pairs


# --------------------------------------------------------------------------- pairs
def test_pairs_point_at_the_window_that_holds_the_questions(baseline, windows, tiny_chunks):
    """ScriptedLLM (deterministic stand-in, no LLM runs here) on the tiny corpus, token windows of 60."""
    llm, gen, pairs = baseline
    by_id = {c.id: c for c in tiny_chunks}
    spans = {(c.id, s) for c, s in windows}
    assert any(sum(1 for c, _ in windows if c.id == ch.id) > 1 for ch in tiny_chunks), (
        "need long chunks"
    )
    assert len(pairs) == 2 * len(
        windows
    )  # exactly the two real questions per window survive the junk
    for p in pairs:
        chunk = by_id[p.positive_id]
        assert (p.positive_id, p.window) in spans
        assert p.positive == chunk.text[p.window[0] : p.window[1]]
        assert p.query in expected_questions(p.positive)
        assert (p.source, p.score, p.doc_id) == ("llm", None, chunk.doc_id)
    # corpus order: chunk by chunk, window by window
    order = [(p.positive_id, p.window) for p in pairs]
    assert order == [(c.id, s) for c, s in windows for _ in range(2)]
    assert gen.stats.windows == len(windows)
    assert gen.stats.calls == llm.calls == gen.stats.requests == len({w for w in llm.attempted()})


def test_junk_is_dropped_and_counted(baseline):
    """ScriptedLLM (deterministic stand-in, no LLM runs here) answers with preambles, junk and repeats."""
    _, gen, pairs = baseline
    dropped = gen.stats.dropped
    for reason in ("preamble", "too_short", "not_question", "duplicate", "extra"):
        assert dropped.get(reason, 0) > 0, (reason, dropped)
    assert gen.stats.parsed == gen.stats.kept + sum(dropped.values())
    assert gen.stats.kept == len(pairs)
    assert not any(p.query.lower().startswith(("here are", "sure", "i hope")) for p in pairs)


def test_plugs_into_generate_pairs_with_progress(tiny_chunks, tokenizer):
    """ScriptedLLM (deterministic stand-in, no LLM runs here) through ragtune.pairs.generate_pairs."""
    from ragtune import progress

    seen: list[tuple[int, int | None, str]] = []

    class Recorder(progress.Display):
        def on_finish(self, task):
            seen.append((task.completed, task.total, task.description))

    gen = LLMGenerator(ScriptedLLM(), config())
    with progress.use(Recorder()):
        result = generate_pairs(tiny_chunks, tokenizer, SPEC, generator=gen)
    assert result.windows == gen.stats.windows > 0
    assert result.pairs and set(result.by_kind) == {"llm"}
    assert (gen.stats.requests, gen.stats.requests, "Asking the LLM") in seen


def test_whole_chunks_when_window_level_is_off(tiny_chunks, tokenizer):
    """ScriptedLLM (deterministic stand-in, no LLM runs here) asked once per whole chunk."""
    llm = ScriptedLLM()
    gen, pairs = run(llm, tiny_chunks, tokenizer, window_level=False, questions_per_chunk=2)
    assert gen.stats.windows == len(tiny_chunks) == llm.calls
    by_id = {c.id: c for c in tiny_chunks}
    assert all(p.window is None and p.positive == by_id[p.positive_id].text for p in pairs)


# --------------------------------------------------------------------------- cache and resume
def test_second_run_is_served_from_the_cache(tiny_chunks, tokenizer, tmp_path, baseline):
    """ScriptedLLM (deterministic stand-in, no LLM runs here): the re-run makes zero calls."""
    first_llm = ScriptedLLM()
    gen1, pairs1 = run(first_llm, tiny_chunks, tokenizer, cache_dir=tmp_path / "cache")
    assert first_llm.calls == gen1.stats.requests > 0
    entries = list((tmp_path / "cache").rglob("*.json"))
    assert len(entries) == gen1.stats.requests
    assert not [
        p for p in (tmp_path / "cache").rglob("*") if ".tmp" in p.name
    ]  # atomic writes left no debris

    second_llm = ScriptedLLM()
    gen2, pairs2 = run(second_llm, tiny_chunks, tokenizer, cache_dir=tmp_path / "cache")
    assert second_llm.calls == 0 and gen2.stats.calls == 0
    assert gen2.stats.cache_hits == gen2.stats.windows
    assert as_rows(pairs2) == as_rows(pairs1) == as_rows(baseline[2])


@pytest.mark.parametrize(
    "change",
    [
        {"questions_per_chunk": 3},
        {"prompt": DEFAULT_PROMPT + "\nBe brief.\n"},
        {"model_name": "scripted-2"},
    ],
    ids=["questions_per_chunk", "prompt", "model"],
)
def test_cache_key_covers_what_changes_the_answer(tiny_chunks, tokenizer, tmp_path, change):
    """ScriptedLLM (deterministic stand-in, no LLM runs here): a changed prompt, count or model misses."""
    chunks = tiny_chunks[:2]
    run(ScriptedLLM(), chunks, tokenizer, cache_dir=tmp_path)
    model = change.get("model_name", "scripted-1")
    cfg = {k: v for k, v in change.items() if k != "model_name"}
    llm = ScriptedLLM(model_name=model)
    gen, _ = run(llm, chunks, tokenizer, cache_dir=tmp_path, **cfg)
    assert gen.stats.cache_hits == 0 and llm.calls == gen.stats.windows


def test_unreadable_cache_entry_is_asked_again(tiny_chunks, tokenizer, tmp_path):
    """ScriptedLLM (deterministic stand-in, no LLM runs here): a damaged entry is a miss, then repaired."""
    chunks = tiny_chunks[:1]
    _, pairs = run(ScriptedLLM(), chunks, tokenizer, cache_dir=tmp_path)
    entry = min(tmp_path.rglob("*.json"))
    entry.write_text("{not json", encoding="utf-8")
    llm = ScriptedLLM()
    gen2, pairs2 = run(llm, chunks, tokenizer, cache_dir=tmp_path)
    assert llm.calls == 1 and gen2.stats.cache_hits == gen2.stats.windows - 1
    assert json.loads(entry.read_text(encoding="utf-8"))["answer"]
    assert as_rows(pairs2) == as_rows(pairs)


def test_failed_run_raises_and_the_rerun_resumes(tiny_chunks, tokenizer, tmp_path, baseline):
    """ScriptedLLM (deterministic stand-in, no LLM runs here) fails for good on ~1/3 of the windows,
    then a re-run with a healthy one asks only for those."""
    broken = ScriptedLLM(fail_mod=3)
    cfg = {"cache_dir": tmp_path, "max_retries": 1, "max_failures": None}
    gen = LLMGenerator(broken, config(**cfg))
    with pytest.raises(RagtuneError) as err:
        gen(tiny_chunks, tokenizer, SPEC)
    failed = broken.attempted() - set(broken.answered)
    assert failed and broken.answered, "the corpus should give both failing and answered windows"
    msg = str(err.value)
    assert f"{len(failed)} of {gen.stats.requests} LLM requests failed" in msg
    assert "ConnectionError" in msg and "re-run to resume" in msg and str(tmp_path) in msg
    assert (
        gen.stats.failures == gen.stats.retries == len(failed)
    )  # each failing window retried once
    assert len(list(tmp_path.rglob("*.json"))) == len(broken.answered)

    healthy = ScriptedLLM()
    _, pairs = run(healthy, tiny_chunks, tokenizer, **cfg)
    assert healthy.attempted() == failed and healthy.calls == len(failed)
    assert as_rows(pairs) == as_rows(baseline[2])


def test_max_failures_stops_a_dead_endpoint_early(tiny_chunks, tokenizer):
    """ScriptedLLM (deterministic stand-in, no LLM runs here) failing every window."""
    llm = ScriptedLLM(fail_mod=1)
    gen = LLMGenerator(llm, config(max_failures=2, max_retries=0, max_concurrency=1))
    with pytest.raises(RagtuneError, match="not attempted") as err:
        gen(tiny_chunks, tokenizer, SPEC)
    assert llm.calls == 2 and gen.stats.skipped == gen.stats.requests - 2
    assert "Set cache_dir" in str(err.value)


# --------------------------------------------------------------------------- retries and timeouts
def test_transient_failures_are_retried(tiny_chunks, tokenizer, baseline):
    """ScriptedLLM (deterministic stand-in, no LLM runs here) fails twice per window, then answers."""
    llm = ScriptedLLM(fail_first=2)
    gen, pairs = run(llm, tiny_chunks, tokenizer, max_retries=3)
    n = gen.stats.requests
    assert gen.stats.retries == 2 * n and gen.stats.calls == llm.calls == 3 * n
    assert gen.stats.failures == 0
    assert as_rows(pairs) == as_rows(baseline[2])


def test_without_retries_a_transient_failure_is_final(tiny_chunks, tokenizer):
    """ScriptedLLM (deterministic stand-in, no LLM runs here) fails once per window; no retries allowed."""
    llm = ScriptedLLM(fail_first=1)
    gen = LLMGenerator(llm, config(max_retries=0, max_failures=None))
    with pytest.raises(RagtuneError, match="after 0 retries"):
        gen(tiny_chunks, tokenizer, SPEC)
    assert gen.stats.failures == gen.stats.requests == llm.calls and gen.stats.retries == 0


def test_empty_answer_is_retried(tiny_chunks, tokenizer):
    """ScriptedLLM (deterministic stand-in, no LLM runs here) answers blank once, then properly."""
    llm = ScriptedLLM(empty_first=1)
    gen, pairs = run(llm, tiny_chunks[:1], tokenizer, max_retries=1)
    assert gen.stats.retries == gen.stats.requests and pairs


def test_timeout_counts_as_a_failure(tiny_chunks, tokenizer):
    """HangingLLM (stand-in for a stuck endpoint, no LLM runs here) never answers; timeout_s ends each try."""
    llm = HangingLLM()
    gen = LLMGenerator(llm, config(timeout_s=0.05, max_retries=1, window_level=False))
    with pytest.raises(RagtuneError, match="TimeoutError"):
        gen(tiny_chunks[:1], tokenizer, SPEC)
    assert gen.stats.timeouts == 2 == llm.calls


# --------------------------------------------------------------------------- concurrency
def test_concurrency_gives_the_same_pairs(tiny_chunks, tokenizer, baseline):
    """AsyncScriptedLLM (deterministic stand-in, no LLM runs here): 1 vs 4 requests in flight."""
    serial, concurrent = AsyncScriptedLLM(), AsyncScriptedLLM()
    _, pairs1 = run(serial, tiny_chunks, tokenizer, max_concurrency=1)
    _, pairs4 = run(concurrent, tiny_chunks, tokenizer, max_concurrency=4)
    assert serial.peak == 1 and concurrent.peak == 4
    assert as_rows(pairs1) == as_rows(pairs4) == as_rows(baseline[2])


def test_blocking_custom_llm_runs_in_threads(tiny_chunks, tokenizer, baseline):
    """BarrierLLM (deterministic stand-in, no LLM runs here) only has a blocking complete()."""
    llm = BarrierLLM()
    # max_retries=0: a broken barrier must fail the test, not be retried away
    _, pairs = run(llm, tiny_chunks, tokenizer, max_concurrency=4, max_retries=0)
    assert as_rows(pairs) == as_rows(baseline[2])


def test_works_inside_a_running_event_loop(tiny_chunks, tokenizer, baseline):
    """ScriptedLLM (deterministic stand-in, no LLM runs here), called from async code (a notebook, a server)."""

    async def main():
        return LLMGenerator(AsyncScriptedLLM(), config())(tiny_chunks, tokenizer, SPEC)

    assert as_rows(asyncio.run(main())) == as_rows(baseline[2])


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "answer, expected",
    [
        ("What is the fare?\nWhere is the depot?", ["What is the fare?", "Where is the depot?"]),
        (
            "Here are 2 questions:\n1. What is the fare?\n2. Where is the depot?",
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            "1) What is the fare?\n2) Where is the depot?",
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            "(1) What is the fare?\n(2) Where is the depot?",
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            "Q1: What is the fare?\nQ2. Where is the depot?",
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            "Question 1: What is the fare?\nQuestion: Where is the depot?",
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            "- What is the fare?\n* Where is the depot?\n• Who drives the tram?",
            ["What is the fare?", "Where is the depot?", "Who drives the tram?"],
        ),
        (
            "**1. What is the fare?**\n*Where is the depot?*",
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            '"What is the fare?"\n“Where is the depot?”',
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            '["What is the fare?", "Where is the depot?"]',
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            '```json\n{"questions": ["What is the fare?", "Where is the depot?"]}\n```',
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            'Sure, here they are:\n```\n["1. What is the fare?", "Where is the depot?"]\n```\nEnjoy!',
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            '{"questions": [{"question": "What is the fare?"}, {"question": "Where is the depot?"}]}',
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            '["What is the fare?",\n "Where is the depot?",\n "How late do',
            ["What is the fare?", "Where is the depot?", "How late do"],
        ),
        (
            "Q: What is the fare? A: 2.40 euros\nWhere is the depot?",
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            "What is the fare?\r\n\r\nWhere is the depot?\r\n",
            ["What is the fare?", "Where is the depot?"],
        ),
        (
            "Explain how the night service works\nList the ticket types",
            ["Explain how the night service works", "List the ticket types"],
        ),
        ("1.5 million riders use which line?", ["1.5 million riders use which line?"]),
        ("Q-learning: what is it used for?", ["Q-learning: what is it used for?"]),
        ("", []),
        ("I cannot help with that.", []),
    ],
)
def test_parse_questions_reads_messy_formats(answer, expected):
    """Pure parsing of LLM-style answers (no LLM involved)."""
    assert parse_questions(answer) == expected


def test_parse_never_joins_lines():
    """A question wrapped over two lines stays two fragments; the junk screen drops them."""
    assert split_candidates("What is the price of a\nmonthly pass?") == [
        "What is the price of a",
        "monthly pass?",
    ]
    assert parse_questions("What is the price of a\nmonthly pass?") == ["What is the price of a"]


def test_screen_counts_every_reason():
    kept, dropped = screen_questions(
        [
            "",
            "Here are 3 questions:",
            "Why?",
            "What " + "very " * 70 + "long?",
            "The tram is blue.",
            "What is the fare?",
            "what is the FARE",
            "Where is the depot?",
            "Who drives it on Sundays?",
        ],
        min_words=3,
        max_words=64,
        limit=2,
    )
    assert kept == ["What is the fare?", "Where is the depot?"]
    assert dropped == {
        "empty": 1,
        "preamble": 1,
        "too_short": 1,
        "too_long": 1,
        "not_question": 1,
        "duplicate": 1,
        "extra": 1,
    }


# --------------------------------------------------------------------------- config and specs
@pytest.mark.parametrize(
    "field, value",
    [
        ("questions_per_chunk", 0),
        ("questions_per_chunk", 2.5),
        ("max_concurrency", 0),
        ("max_retries", -1),
        ("backoff_s", -1.0),
        ("timeout_s", 0),
        ("min_query_words", 0),
        ("max_query_words", 2),
        ("max_failures", 0),
        ("window_level", "yes"),
        ("prompt", ""),
        ("prompt", "Write {num_questions} questions."),
        ("prompt", "Questions about: {context}"),
        ("cache_dir", ""),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError) as err:
        LLMConfig(**{field: value})
    assert str(err.value).startswith(f"{field}=")


def test_config_cache_dir_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        LLMConfig(cache_dir=tmp_path / "file")


def test_prompt_placeholders_are_replaced_literally():
    cfg = LLMConfig(
        prompt='Return {"questions": [...]} with {num_questions_per_chunk} items for:\n{context_str}',
        questions_per_chunk=3,
    )
    assert (
        cfg.render("a {context} b")
        == 'Return {"questions": [...]} with 3 items for:\na {context} b'
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gpt-4o-mini", "expected provider:model"),
        ("anthropic:claude", "unknown provider 'anthropic'"),
        ("openai:", "no model name"),
        ("openai-like:qwen", "needs MODEL@BASE_URL"),
    ],
)
def test_llm_spec_errors(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        llm_from_spec(spec)


@pytest.mark.parametrize(
    "spec, module, package",
    [
        ("ollama:llama3.1", "llama_index.llms.ollama", "llama-index-llms-ollama"),
        ("openai:gpt-4o-mini", "llama_index.llms.openai", "llama-index-llms-openai"),
        (
            "openai-like:qwen@http://localhost:8000/v1",
            "llama_index.llms.openai_like",
            "llama-index-llms-openai-like",
        ),
    ],
)
def test_llm_spec_names_the_extra_to_install(monkeypatch, spec, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # import now fails as if not installed
    with pytest.raises(ConfigError) as err:
        llm_from_spec(spec)
    assert 'pip install "ragtune[llm]"' in str(err.value) and package in str(err.value)


# --------------------------------------------------------------------------- whose key goes where (issue 28)
SECRET = "sk-test-SECRET"


class ChatListener:
    """A real OpenAI-compatible chat endpoint on 127.0.0.1 (``http.server`` in a thread) that records
    the headers of every request it receives and answers each with two questions about the tram line."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.headers = []  # one dict of headers per request, in arrival order

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append({k.lower(): v for k, v in self.headers.items()})
                answer = "How often do Harbor Line trams run on weekdays?\nWhere does the first tram leave from?"
                body = json.dumps({
                    "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ChatListener:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(30)

    def authorizations(self) -> set[str | None]:
        assert self.headers, "the listener received no request"
        assert not any(SECRET in v for h in self.headers for v in h.values()), "OPENAI_API_KEY was sent"
        return {h.get("authorization") for h in self.headers}


@pytest.fixture()
def openai_key_set(monkeypatch) -> None:
    """OPENAI_API_KEY holds a secret; RAGTUNE_LLM_KEY is not set."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("RAGTUNE_LLM_KEY", raising=False)


def test_generate_sends_an_openai_like_url_only_its_own_key(tiny_corpus, tmp_path, capsys, monkeypatch, openai_key_set):
    """``ragtune generate --llm openai-like:m@URL``: OPENAI_API_KEY never reaches URL; RAGTUNE_LLM_KEY does."""
    from tests.helpers import run_inprocess

    pytest.importorskip("llama_index.llms.openai_like")
    with ChatListener() as listener:
        spec = f"openai-like:m@{listener.url}"
        code, _, err = run_inprocess(capsys, "generate", str(tiny_corpus), "--out", str(tmp_path / "a.jsonl"), "--llm", spec)
        assert code == 0, err
        assert listener.authorizations() == {"Bearer unused"}  # the openai client's placeholder, no secret

        listener.headers.clear()
        monkeypatch.setenv("RAGTUNE_LLM_KEY", "llm-key")
        code, _, err = run_inprocess(capsys, "generate", str(tiny_corpus), "--out", str(tmp_path / "b.jsonl"), "--llm", spec)
        assert code == 0, err
        assert listener.authorizations() == {"Bearer llm-key"}


def test_an_llm_url_from_a_config_file_gets_no_openai_key(tiny_corpus, tmp_path, openai_key_set):
    """A TOML file someone hands over (``[generation] llm = "openai-like:m@URL"``) cannot collect OPENAI_API_KEY:
    the pairs stage of ``ragtune run --config`` asks URL without it."""
    from ragtune.config import load_config_file
    from ragtune.corpus.reader import load_corpus, save_chunks
    from ragtune.pipeline.rundir import RunDir
    from ragtune.pipeline.stages import resolve_run_config, stage_pairs

    pytest.importorskip("llama_index.llms.openai_like")
    with ChatListener() as listener:
        toml = tmp_path / "shared.toml"
        toml.write_text(f'corpus = "{tiny_corpus}"\n\n[generation]\nllm = "openai-like:m@{listener.url}"\n')
        cfg = resolve_run_config(load_config_file(toml))
        rd = RunDir(tmp_path / "run")
        chunks = load_corpus(cfg.corpus, cfg.chunk).chunks
        save_chunks(rd.chunks, chunks)
        pairs = stage_pairs(rd, chunks, cfg.train.base, cfg.generation)
        assert pairs and listener.authorizations() == {"Bearer unused"}
