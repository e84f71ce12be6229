"""BM25 sparse vectors: Qdrant's own BM25 tokenizer and weights, the same for every engine.

Every collection ragtune writes holds, beside its dense vectors, one sparse
``bm25`` vector per chunk: term-frequency weights from ``qdrant-edge-py``'s
``Bm25`` embedder (Snowball stemmer and stopwords of the corpus's language,
``k``/``b`` length normalisation), stored with Qdrant's ``Modifier.Idf`` so the
engine applies the inverse document frequency of the collection as it stands.
qdrant-client (a server, ``:memory:``) receives the same vectors, so a
collection scores alike on Edge and on a server; :func:`bm25_scores` computes
the same score exactly in memory, for evaluation and for fitting the fusion.

The corpus's language is detected from a sample of its text (``langdetect``,
seeded, so it is deterministic) unless a chunk or the caller names it.

Example:
    >>> lex = Lexical(LexicalConfig(language="english"))
    >>> q = lex.query("How many riders?")
    >>> len(q[0]) == len(q[1])
    True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ragtune.errors import InputError

#: ISO 639-1 code → the Snowball stemmer / stopword language name ``qdrant-edge-py`` knows
LANGUAGES = {
    "ar": "arabic", "da": "danish", "de": "german", "el": "greek", "en": "english", "es": "spanish",
    "fi": "finnish", "fr": "french", "hu": "hungarian", "it": "italian", "nl": "dutch", "no": "norwegian",
    "pt": "portuguese", "ro": "romanian", "ru": "russian", "sv": "swedish", "ta": "tamil", "tr": "turkish",
}
#: texts a language guess reads (the first characters of each)
SAMPLE_TEXTS = 32
SAMPLE_CHARS = 2_000


@dataclass(frozen=True)
class LexicalConfig:
    """How chunks become BM25 sparse vectors; recorded in the collection's metadata.

    Args:
        language: a Snowball language name (``english``, ``danish``, …) or an
            ISO code (``en``, ``da``); ``none`` disables stemming and stopwords.
        k: term-frequency saturation (BM25's k1).
        b: length normalisation (0 none, 1 full).
        avg_len: the average chunk length in tokens (set from the corpus at indexing).
    """

    language: str = "english"
    k: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "language", normalise_language(self.language))

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> LexicalConfig | None:
        if not meta:
            return None
        return cls(**{k: meta[k] for k in ("language", "k", "b", "avg_len") if k in meta})


def normalise_language(language: str | None) -> str:
    """``da`` / ``Danish`` / ``danish`` → ``danish``; raises naming the choices for an unknown one."""
    key = (language or "english").strip().lower()
    key = LANGUAGES.get(key, key)
    if key != "none" and key not in LANGUAGES.values():
        raise InputError(
            f"language={language!r}: BM25 knows {', '.join(sorted(LANGUAGES.values()))} "
            "(or their ISO codes), or 'none' for no stemming and no stopwords"
        )
    return key


def detect_language(texts: Sequence[str]) -> str:
    """The language most of ``texts`` are in, as a BM25 language name (``english`` when unsure)."""
    try:
        from langdetect import DetectorFactory, LangDetectException, detect
    except ImportError:  # pragma: no cover - a declared dependency
        return "english"
    DetectorFactory.seed = 0
    votes: Counter[str] = Counter()
    for text in texts[:SAMPLE_TEXTS]:
        sample = text[:SAMPLE_CHARS]
        if len(sample.strip()) < 20:
            continue
        try:
            votes[detect(sample)] += 1
        except LangDetectException:
            continue
    for code, _ in votes.most_common():
        if code in LANGUAGES:
            return LANGUAGES[code]
    return "english"


class Lexical:
    """Qdrant's BM25 embedder for one :class:`LexicalConfig`: documents and queries as sparse vectors.

    ``documents`` gives term-frequency weights (saturated by ``k``, normalised
    by ``b`` and ``avg_len``); ``query`` gives weight 1 per distinct term. The
    engine multiplies by each term's IDF over the collection.
    """

    def __init__(self, config: LexicalConfig | None = None) -> None:
        import qdrant_edge as qe

        self.config = config or LexicalConfig()
        c = self.config
        if c.language == "none":
            bm25 = qe.Bm25Config(k=c.k, b=c.b, avg_len=c.avg_len, stemmer=qe.DisabledStemmer(),
                                 stopwords=qe.StopwordsSet(languages=set(), custom=set()))
        else:
            bm25 = qe.Bm25Config(k=c.k, b=c.b, avg_len=c.avg_len, language=c.language)
        self._model = qe.Bm25(bm25)

    def documents(self, texts: Sequence[str]) -> list[tuple[list[int], list[float]]]:
        out = []
        for t in texts:
            v = self._model.embed_document(t)
            out.append((list(v.indices), list(v.values)))
        return out

    def query(self, text: str) -> tuple[list[int], list[float]]:
        v = self._model.embed_query(text)
        return list(v.indices), list(v.values)

    def token_count(self, text: str) -> int:
        """Tokens BM25 counts in ``text`` (after stopwords): a query's weights are 1 per distinct term,
        so this sums a document's raw term frequencies instead (used to set ``avg_len``)."""
        import qdrant_edge as qe

        c = self.config
        if not hasattr(self, "_counter"):
            # k=0 makes BM25's saturated tf exactly 1 per distinct term, b=0 drops length normalisation;
            # the raw count needs tf itself, so use a large k with b=0: w = tf*(k+1)/(tf+k) -> tf
            raw = qe.Bm25Config(k=1e9, b=0.0, avg_len=1.0, language=None if c.language == "none" else c.language)
            self._counter = qe.Bm25(raw)
        return round(sum(self._counter.embed_document(text).values))


def fitted_config(texts: Sequence[str], language: str | None = None, k: float = 1.2, b: float = 0.75) -> LexicalConfig:
    """A :class:`LexicalConfig` for a corpus: its language (detected unless given) and its average length."""
    lang = normalise_language(language) if language else detect_language(texts)
    probe = Lexical(LexicalConfig(language=lang, k=k, b=b))
    sample = texts[:500]
    avg = sum(probe.token_count(t) for t in sample) / max(1, len(sample))
    return LexicalConfig(language=lang, k=k, b=b, avg_len=max(1.0, round(avg, 1)))


def bm25_scores(
    doc_vectors: Sequence[tuple[Sequence[int], Sequence[float]]],
    query_vectors: Sequence[tuple[Sequence[int], Sequence[float]]],
) -> np.ndarray:
    """Exact BM25 scores ``(n_queries, n_docs)`` as Qdrant computes them with ``Modifier.Idf``.

    IDF is Qdrant's: ``ln(1 + (N - n + 0.5) / (n + 0.5))`` over the given documents.
    """
    from scipy import sparse

    rows, cols, vals = [], [], []
    for i, (idx, val) in enumerate(doc_vectors):
        rows.extend([i] * len(idx))
        cols.extend(idx)
        vals.extend(val)
    vocab = {t: j for j, t in enumerate(sorted(set(cols)))}
    n_docs = len(doc_vectors)
    d = sparse.csr_matrix(
        (np.asarray(vals, dtype=np.float64), (np.asarray(rows), np.asarray([vocab[c] for c in cols], dtype=np.int64))),
        shape=(n_docs, len(vocab)),
    )
    df = np.bincount(d.indices, minlength=len(vocab))
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    q = np.zeros((len(query_vectors), len(vocab)), dtype=np.float64)
    for i, (idx, val) in enumerate(query_vectors):
        for t, v in zip(idx, val):
            j = vocab.get(t)
            if j is not None:
                q[i, j] += v * idf[j]
    return np.asarray(d @ q.T).T.astype(np.float32)
