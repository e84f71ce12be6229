"""The pair artifact: ``pairs.jsonl``, one training/evaluation example per line.

Fields: ``query``, ``positive`` (text the query should retrieve — the window of
the chunk that holds the answer), ``positive_id`` (id of the chunk it came
from), optional ``negatives`` (``[{"id", "text"}]``), ``source`` (which
generator made it), ``score``, ``doc_id``, ``window`` (character span of the
positive inside its chunk) and ``split`` (``train``/``val``).
LlamaIndex's ``EmbeddingQAFinetuneDataset`` JSON is read and written too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune._io import read_jsonl, write_json, write_jsonl
from ragtune.errors import InputError


@dataclass
class Pair:
    query: str
    positive: str
    positive_id: str
    source: str = "offline"
    score: float | None = None
    negatives: list[dict[str, str]] = field(default_factory=list)
    doc_id: str | None = None
    window: tuple[int, int] | None = None
    split: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v not in (None, [], {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "pair") -> Pair:
        for key in ("query", "positive", "positive_id"):
            if not isinstance(d.get(key), str) or not d[key].strip():
                raise InputError(f"{where}: field '{key}' is missing or not a non-empty string")
        negs = d.get("negatives") or []
        if not isinstance(negs, list) or not all(isinstance(n, dict) and "text" in n for n in negs):
            raise InputError(f"{where}: 'negatives' must be a list of objects with 'text' (and 'id')")
        win = d.get("window")
        return cls(
            query=d["query"],
            positive=d["positive"],
            positive_id=d["positive_id"],
            source=str(d.get("source", "given")),
            score=d.get("score"),
            negatives=negs,
            doc_id=d.get("doc_id"),
            window=tuple(win) if win else None,
            split=d.get("split"),
        )


def save_pairs(path: str | Path, pairs: Iterable[Pair]) -> int:
    """Write ``pairs.jsonl`` atomically; returns the number written."""
    return write_jsonl(path, (p.to_dict() for p in pairs))


def load_pairs(path: str | Path) -> list[Pair]:
    """Read pairs from ``pairs.jsonl`` or a LlamaIndex ``EmbeddingQAFinetuneDataset`` JSON."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file (expected pairs.jsonl or a LlamaIndex dataset JSON)")
    if path.suffix.lower() == ".json":
        return pairs_from_llamaindex(path)
    try:
        rows = read_jsonl(path)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    pairs = [Pair.from_dict(r, where=f"{path}:{i}") for i, r in enumerate(rows, 1)]
    if not pairs:
        raise InputError(f"{path}: no pairs in the file")
    return pairs


def read_llamaindex_json(path: str | Path) -> dict[str, Any]:
    """Load and shape-check an ``EmbeddingQAFinetuneDataset`` JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with 'queries', 'corpus', 'relevant_docs'")
    missing = [k for k in ("queries", "corpus", "relevant_docs") if not isinstance(data.get(k), dict)]
    if missing:
        raise InputError(
            f"{path}: not an EmbeddingQAFinetuneDataset: missing or non-object field(s) {', '.join(missing)}"
        )
    for qid, rel in data["relevant_docs"].items():
        if not isinstance(rel, list) or not rel:
            raise InputError(f"{path}: relevant_docs[{qid!r}] must be a non-empty list of corpus ids")
    return data


def pairs_from_llamaindex(path: str | Path) -> list[Pair]:
    """One pair per (query, relevant chunk) of a LlamaIndex dataset."""
    data = read_llamaindex_json(path)
    pairs = []
    for qid, query in data["queries"].items():
        for cid in data["relevant_docs"].get(qid, []):
            if cid not in data["corpus"]:
                raise InputError(f"{path}: relevant_docs[{qid!r}] names {cid!r}, which is not in 'corpus'")
            pairs.append(Pair(query=query, positive=data["corpus"][cid], positive_id=cid, source="given"))
    if not pairs:
        raise InputError(f"{path}: the dataset has no queries with relevant documents")
    return pairs


def pairs_to_llamaindex(pairs: Iterable[Pair], corpus: dict[str, str], path: str | Path) -> Path:
    """Write pairs as an ``EmbeddingQAFinetuneDataset`` JSON over ``corpus`` (id → text)."""
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    for i, p in enumerate(pairs):
        qid = f"q{i}"
        queries[qid] = p.query
        relevant[qid] = [p.positive_id]
    return write_json(path, {"queries": queries, "corpus": corpus, "relevant_docs": relevant, "mode": "text"})
