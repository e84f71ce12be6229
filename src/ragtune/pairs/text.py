"""Small text utilities shared by the offline generator and the filters."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9'’\-]*[A-Za-z0-9]|[A-Za-z]|\$?\d[\d,.]*%?")
SENT_SPLIT_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n{2,}|\n(?=[#*\-•]|\d+[.)]\s)")
HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")

# A compact English stop-word list (function words only): content words are what
# make a query specific, so everything here is dropped from keyphrases.
STOPWORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "either", "etc", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "may", "me", "might", "more", "most", "must", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "per", "same", "shall", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "upon", "us", "very", "via", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "whose", "why", "will", "with", "within", "without", "would", "yet", "you", "your", "yours", "yourself", "yourselves", "one", "two", "also", "however", "therefore", "thus", "include", "includes", "including", "including'", "such"]
)


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w.lower() not in STOPWORDS and len(w) > 1]


def sentences(text: str) -> list[str]:
    """Split into sentences and list items (regex; good enough for salience picking)."""
    parts = SENT_SPLIT_RE.split(text)
    return [" ".join(p.split()) for p in parts if p and p.strip()]


def normalize_query(q: str) -> str:
    """Lower-case, punctuation-free form used to find duplicate queries."""
    return " ".join(w.lower() for w in words(q))


class IDF:
    """Inverse document frequency over a collection of texts (smoothed, BM25-style)."""

    def __init__(self, texts: Iterable[str]) -> None:
        df: Counter[str] = Counter()
        n = 0
        for t in texts:
            n += 1
            df.update({w.lower() for w in words(t)})
        self.n = max(n, 1)
        self.df = df

        self.vocab: set[str] | None = None

    def restrict_to(self, vocab: set[str], min_df: int = 3) -> None:
        """Score as zero any word that is neither in ``vocab`` nor seen in ``min_df`` texts.

        Numbers and codes with digits always count (figures are what questions ask for).
        """
        self.vocab = vocab or None
        self.min_df = min_df

    def known(self, word: str) -> bool:
        w = word.lower()
        if self.vocab is None or any(ch.isdigit() for ch in w):
            return True
        return w in self.vocab or self.df.get(w, 0) >= self.min_df or all(
            part in self.vocab for part in w.split("-") if part
        )

    def __call__(self, word: str) -> float:
        if not self.known(word):
            return 0.0
        d = self.df.get(word.lower(), 0)
        return math.log(1 + (self.n - d + 0.5) / (d + 0.5))
