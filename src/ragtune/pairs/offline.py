"""The offline pair generator: queries from the corpus itself, no LLM, no hub.

It mixes published self-supervised recipes, each producing queries that look
like something a person types or asks, paired with the *window* of the chunk
that holds the answer (so training matches how long chunks are searched):

- ``heading``   — a section heading as the query for the text under it
  (title → section, as in web-search pretraining);
- ``question``  — a question built around a salient phrase of a sentence
  ("What is the battery warranty period?");
- ``keyphrase`` — the salient terms of a sentence in their original order,
  the way people type into a search box;
- ``compound``  — a two-part question over two salient phrases of the window
  with the lead-ins LLM-written questions use ("Based on the context
  information, how does X relate to Y?"): people and LLMs ask about several
  facts of a passage at once, and a query that names two of its facts teaches
  the model to combine cues rather than match one phrase;
- ``ict``       — inverse cloze (Lee et al., 2019): a sentence is the query and
  is removed from its context in 90 % of pairs, so the model must match topic
  rather than copied text.

Salience is IDF over the corpus: sentences and phrases with rare, specific
words make queries with one clear answer.
"""

from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ragtune.corpus.reader import Chunk
from ragtune.encoders.windows import WindowSpec, batch_window_spans
from ragtune.errors import ConfigError
from ragtune.pairs.schema import Pair
from ragtune.pairs.text import HEADING_RE, IDF, STOPWORDS, content_words, sentences, words
from ragtune.progress import track

log = logging.getLogger(__name__)

KINDS = ("heading", "question", "keyphrase", "compound", "ict")


@dataclass
class OfflineConfig:
    """Knobs of the offline generator; defaults chosen on the Uber/Lyft 10-K benchmarks."""

    queries_per_window: int = 3
    kinds: tuple[str, ...] = KINDS
    min_sentence_words: int = 6
    max_sentence_words: int = 45
    ict_remove_prob: float = 0.9
    seed: int = 13

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"kinds={list(self.kinds)}: unknown kind(s) {bad}; choose from {list(KINDS)}")
        if self.queries_per_window < 1:
            raise ConfigError(f"queries_per_window={self.queries_per_window}: must be >= 1")


@dataclass
class Window:
    chunk: Chunk
    span: tuple[int, int]
    heading: str | None = None

    @property
    def text(self) -> str:
        return self.chunk.text[self.span[0] : self.span[1]]


@dataclass
class GenerationStats:
    windows: int = 0
    generated: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        return {"windows": self.windows, "generated": dict(self.generated)}


class OfflineGenerator:
    """Callable: ``OfflineGenerator(config)(chunks, tokenizer, spec) -> list[Pair]``."""

    name = "offline"

    def __init__(self, config: OfflineConfig | None = None) -> None:
        self.config = config or OfflineConfig()
        self.stats = GenerationStats()

    def __call__(
        self,
        chunks: Sequence[Chunk],
        tokenizer: Any,
        spec: WindowSpec,
    ) -> list[Pair]:
        self.stats = GenerationStats()
        rng = random.Random(self.config.seed)
        idf = IDF(c.text for c in chunks)
        idf.restrict_to(_vocabulary(tokenizer))
        spans = batch_window_spans([c.text for c in chunks], tokenizer, spec)
        pairs: list[Pair] = []
        items = list(zip(chunks, spans))
        for chunk, chunk_spans in track(items, "Generating pairs", unit="chunks"):
            for span in chunk_spans:
                win = Window(chunk, span, heading=_heading_for(chunk.text, span[0]))
                self.stats.windows += 1
                pairs.extend(self._window_pairs(win, idf, rng))
        return pairs

    # one window ---------------------------------------------------------
    def _window_pairs(self, win: Window, idf: IDF, rng: random.Random) -> list[Pair]:
        cfg = self.config
        cands = self._salient_sentences(win.text, idf)
        out: list[Pair] = []
        kinds = list(cfg.kinds)
        rng.shuffle(kinds)
        if "heading" in kinds and win.heading:
            kinds.remove("heading")
            kinds.insert(0, "heading")
        used: set[str] = set()
        for kind in kinds:
            if len(out) >= cfg.queries_per_window:
                break
            pair = self._make(kind, win, cands, used, idf, rng)
            if pair is not None:
                out.append(pair)
                self.stats.generated[kind] += 1
        # fill up with more sentence-based queries when a kind could not produce one
        tries = 0
        while len(out) < cfg.queries_per_window and tries < 4 and cands:
            tries += 1
            kind = rng.choice([k for k in ("question", "keyphrase", "compound", "ict") if k in cfg.kinds] or ["ict"])
            pair = self._make(kind, win, cands, used, idf, rng)
            if pair is not None:
                out.append(pair)
                self.stats.generated[kind] += 1
        return out

    def _make(
        self, kind: str, win: Window, cands: list[str], used: set[str], idf: IDF, rng: random.Random
    ) -> Pair | None:
        if kind == "heading":
            if not win.heading or not (2 <= len(words(win.heading)) <= 14):
                return None
            return self._pair(win, win.heading, kind, win.text)
        free = [s for s in cands if s not in used]
        if not free:
            return None
        sent = free[0] if rng.random() < 0.6 else rng.choice(free[: max(1, len(free) // 2 + 1)])
        used.add(sent)
        if kind == "ict":
            positive = win.text
            if rng.random() < self.config.ict_remove_prob and len(win.text) > len(sent) * 2:
                positive = " ".join(win.text.replace(sent, " ").split()) if sent in win.text else win.text
            return self._pair(win, sent, kind, positive)
        if kind == "compound":
            others = [t for t in cands if t != sent]
            if not others:
                return None
            q = compound_query(sent, rng.choice(others[:4]), idf, rng)
        elif kind == "keyphrase":
            q = keyphrase_query(sent, idf, rng)
        else:
            q = question_query(sent, idf, rng, heading=win.heading)
        if not q:
            return None
        return self._pair(win, q, kind, win.text)

    def _pair(self, win: Window, query: str, kind: str, positive: str) -> Pair:
        return Pair(
            query=query.strip(),
            positive=positive,
            positive_id=win.chunk.id,
            source=f"offline:{kind}",
            doc_id=win.chunk.doc_id,
            window=win.span,
        )

    def _salient_sentences(self, text: str, idf: IDF) -> list[str]:
        """Sentences worth asking about, most specific first (mean IDF of content words)."""
        cfg = self.config
        scored = []
        for s in sentences(text):
            if HEADING_RE.match(s):
                continue
            ws = words(s)
            if not (cfg.min_sentence_words <= len(ws) <= cfg.max_sentence_words):
                continue
            alpha = sum(ch.isalpha() for ch in s) / max(len(s), 1)
            if alpha < 0.55:  # tables, numbers-only rows, page furniture
                continue
            cw = content_words(s)
            if len(cw) < 3:
                continue
            score = sum(idf(w) for w in cw) / len(cw) + 0.15 * min(len(cw), 12) ** 0.5
            scored.append((score, s))
        scored.sort(key=lambda t: -t[0])
        return [s for _, s in scored]


def _vocabulary(tokenizer: Any) -> set[str]:
    """Whole words the tokenizer knows: PDF text glues and splits words ("theExisting",
    "spa mming"), and such fragments would otherwise look like the rarest, most
    salient terms of all."""
    try:
        vocab = tokenizer.get_vocab()
    except (AttributeError, NotImplementedError):
        return set()
    return {w.lower() for w in vocab if w.isalpha() and len(w) > 1}


def _heading_for(text: str, offset: int) -> str | None:
    """The nearest Markdown heading at or before ``offset`` in the chunk (or a title line)."""
    best = None
    pos = 0
    for line in text.splitlines(keepends=True):
        if pos > offset + 200:  # a heading just inside the window counts too
            break
        m = HEADING_RE.match(line)
        if m:
            best = m.group(1).strip()
        pos += len(line)
    return best


_NUM_RE = re.compile(r"\d")


def key_terms(sentence: str, idf: IDF, k: int) -> list[str]:
    """The ``k`` highest-IDF content words of a sentence, in their original order."""
    cw = [w for w in content_words(sentence) if idf.known(w)]
    seen: dict[str, str] = {}
    for w in cw:
        seen.setdefault(w.lower(), w)
    ranked = sorted(seen.values(), key=lambda w: -idf(w))[:k]
    keep = {w.lower() for w in ranked}
    out, emitted = [], set()
    for w in cw:
        if w.lower() in keep and w.lower() not in emitted:
            out.append(w)
            emitted.add(w.lower())
    return out


def keyphrase_query(sentence: str, idf: IDF, rng: random.Random) -> str | None:
    terms = key_terms(sentence, idf, rng.randint(3, 5))
    if len(terms) < 2:
        return None
    return " ".join(t if t.isupper() or _NUM_RE.search(t) else t.lower() for t in terms)


def salient_phrase(sentence: str, idf: IDF, max_len: int = 4) -> str | None:
    """The contiguous run of content words (2..max_len) with the highest total IDF."""
    toks = words(sentence)
    best, best_score = None, 0.0
    for i in range(len(toks)):
        if toks[i].lower() in STOPWORDS or not idf.known(toks[i]):
            continue
        score = 0.0
        for j in range(i, min(i + max_len, len(toks))):
            if toks[j].lower() in STOPWORDS or not idf.known(toks[j]):
                break
            score += idf(toks[j])
            if j > i and score > best_score:
                best, best_score = toks[i : j + 1], score
    if not best:
        return None
    return " ".join(t if (t.isupper() or (t[:1].isupper() and i > 0)) else t.lower() for i, t in enumerate(best))


_TEMPLATES_NUMERIC = (
    "What was the {p}?",
    "How much {p}?",
    "What is the amount of {p}?",
    "What figure is reported for {p}?",
)
_TEMPLATES_RULE = ("What is required for {p}?", "What are the rules for {p}?", "When must {p} happen?")
_TEMPLATES_GENERAL = (
    "What is {p}?",
    "What does the document say about {p}?",
    "How does {p} work?",
    "What are the details of {p}?",
    "Why is {p} important?",
    "What should I know about {p}?",
)


def question_query(sentence: str, idf: IDF, rng: random.Random, heading: str | None = None) -> str | None:
    phrase = salient_phrase(sentence, idf)
    if not phrase:
        return None
    low = sentence.lower()
    if _NUM_RE.search(sentence) and not _NUM_RE.search(phrase):
        tmpl = rng.choice(_TEMPLATES_NUMERIC)
    elif any(w in low for w in (" must ", " required", " should ", " may not ", " shall ")):
        tmpl = rng.choice(_TEMPLATES_RULE)
    else:
        tmpl = rng.choice(_TEMPLATES_GENERAL)
    q = tmpl.format(p=phrase)
    # add one more specific term from the sentence so the question has one clear answer
    extra = [t for t in key_terms(sentence, idf, 3) if t.lower() not in phrase.lower()]
    if extra and rng.random() < 0.5:
        q = q[:-1] + f" regarding {extra[0] if extra[0].isupper() else extra[0].lower()}?"
    if heading and rng.random() < 0.25:
        q = q[:-1] + f" in {heading.lower()}?"
    return q


_LEADS = (
    "",
    "",
    "Based on the context information, ",
    "According to the document, ",
    "Based on the information provided, ",
    "As described in the text, ",
)
_COMPOUND = (
    "what is said about {a}, and how does it relate to {b}?",
    "how does {a} affect {b}?",
    "what is the relationship between {a} and {b}?",
    "what are {a} and {b}?",
    "explain {a}. Additionally, what is stated about {b}?",
    "how could {a} impact {b}, and why?",
    "what role does {a} play in {b}?",
)


def compound_query(first: str, second: str, idf: IDF, rng: random.Random) -> str | None:
    """A two-part question over the salient phrases of two sentences of one passage."""
    a, b = salient_phrase(first, idf), salient_phrase(second, idf)
    if not a or not b or a.lower() == b.lower():
        return None
    q = rng.choice(_COMPOUND).format(a=a, b=b)
    lead = rng.choice(_LEADS)
    return lead + q if lead else q[0].upper() + q[1:]
