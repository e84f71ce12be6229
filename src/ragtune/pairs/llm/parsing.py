"""Reading questions out of an LLM's answer.

An answer may be JSON, a numbered or bulleted list, or plain lines, often with
a preamble. :func:`split_candidates` turns it into cleaned candidate lines,
:func:`screen_questions` keeps the real questions and counts the rest by
reason, and :func:`parse_questions` does both. Junk is dropped and counted
(see :attr:`~ragtune.pairs.llm.LLMGenerator.stats`): preambles ("Here are 2
questions:"), lines that are not questions, too short or too long ones,
duplicates within a window, and questions beyond the number asked.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ragtune.pairs.text import normalize_query, words

__all__ = ["QUESTION_STARTS", "parse_questions", "screen_questions", "split_candidates"]

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
