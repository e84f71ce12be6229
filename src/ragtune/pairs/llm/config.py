"""Settings and counters of the LLM pair generator.

:class:`LLMConfig` holds the generator's knobs and checks each one when it is
made, so a bad value fails at once with a message naming the field, not
halfway through a paid run; :class:`LLMStats` counts what the last run did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError

__all__ = ["DEFAULT_PROMPT", "FEW_SHOT_PROMPT", "LLMConfig", "LLMStats"]

#: Modelled on LlamaIndex's ``generate_qa_embedding_pairs`` prompt, but asks for
#: what a *user* would ask (retrieval queries), not exam questions, and for a
#: plain one-per-line answer that :func:`~ragtune.pairs.llm.parsing.parse_questions`
#: reads reliably.
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

#: For small local models (``--llm local``: SmolLM2-135M): a text to continue, not an
#: instruction. On the sample corpus, SmolLM2 given DEFAULT_PROMPT mostly wrote
#: about "the context" or "this document" (6 of 10 answers held no usable question);
#: continuing this list it wrote 22 questions about the passage from 8 windows.
#: Sent as is (``complete(..., formatted=True)``: no chat template); the answer
#: continues after the last "-".
FEW_SHOT_PROMPT = """\
Text: The museum is open from 9:00 to 17:00 and closed on Mondays. Adults pay 12 euros; children under 12 enter free.
Questions:
- How much does an adult ticket to the museum cost?
- Is the museum open on Mondays?

Text: Our router supports WPA3. To reset it, hold the reset button for ten seconds until the light blinks orange.
Questions:
- How do I reset the router?
- Which Wi-Fi security does the router support?

Text: {context}
Questions:
-"""

_CONTEXT_KEYS = ("{context}", "{context_str}")
_NUM_KEYS = ("{num_questions}", "{num_questions_per_chunk}")


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

    def render(self, context: str, template: str | None = None) -> str:
        """The prompt for one passage (the count first, so a passage's own braces stay intact).

        Args:
            context: the passage.
            template: another template than ``prompt`` (the generator's few-shot one).
        """
        text = self.prompt if template is None else template
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
