"""Evaluation sets: LlamaIndex ``EmbeddingQAFinetuneDataset`` JSON, BEIR folders, held-out pairs.

A given set is searched over its *own* corpus, so figures compare with anyone
else's on the same set; the held-out split of generated pairs is searched over
all chunks of the run.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragtune._io import read_jsonl
from ragtune.corpus.reader import Chunk
from ragtune.errors import InputError
from ragtune.pairs.schema import Pair, load_pairs, read_llamaindex_json


@dataclass
class RetrievalDataset:
    """Queries, a corpus and graded relevance judgements (``qid -> {doc_id: grade}``)."""

    name: str
    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, dict[str, int]]
    kind: str = "custom"
    source: str = ""
    info: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # keep only queries that have at least one relevant document in the corpus
        self.relevant = {
            q: {d: g for d, g in rel.items() if g > 0 and d in self.corpus}
            for q, rel in self.relevant.items()
            if q in self.queries
        }
        self.relevant = {q: r for q, r in self.relevant.items() if r}
        self.queries = {q: t for q, t in self.queries.items() if q in self.relevant}
        if not self.queries:
            raise InputError(f"{self.source or self.name}: no query has a relevant document in the corpus")

    def __len__(self) -> int:
        return len(self.queries)


def load_eval_dataset(path: str | Path, chunks_path: str | Path | None = None) -> RetrievalDataset:
    """Load an evaluation set, detecting its format from the path.

    - a folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/`` → BEIR;
    - a ``.json`` file → LlamaIndex ``EmbeddingQAFinetuneDataset``;
    - a ``.jsonl`` file → ragtune pairs (their ``val`` split), searched over
      ``chunks_path`` (default: ``chunks.jsonl`` beside the pairs).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p}: no such evaluation dataset")
    if p.is_dir():
        return load_beir(p)
    if p.suffix.lower() == ".json":
        return load_llamaindex(p)
    if p.suffix.lower() == ".jsonl":
        from ragtune.corpus.reader import load_chunks

        cpath = Path(chunks_path) if chunks_path else p.with_name("chunks.jsonl")
        if not cpath.exists():
            raise InputError(f"{p}: pairs need their chunks to be searched; no {cpath} (pass chunks_path)")
        return from_pairs(load_pairs(p), load_chunks(cpath), name=p.stem)
    raise InputError(
        f"{p}: unknown dataset format (give a LlamaIndex dataset .json, a BEIR folder, or pairs.jsonl)"
    )


def load_llamaindex(path: str | Path) -> RetrievalDataset:
    data = read_llamaindex_json(path)
    rel = {q: {d: 1 for d in docs} for q, docs in data["relevant_docs"].items()}
    bad = [d for docs in rel.values() for d in docs if d not in data["corpus"]]
    if bad:
        raise InputError(f"{path}: relevant_docs names {bad[0]!r}, which is not in 'corpus'")
    return RetrievalDataset(
        name=Path(path).stem,
        queries={str(k): str(v) for k, v in data["queries"].items()},
        corpus={str(k): str(v) for k, v in data["corpus"].items()},
        relevant=rel,
        kind="llamaindex",
        source=str(path),
    )


def load_beir(folder: str | Path, split: str = "test") -> RetrievalDataset:
    folder = Path(folder)
    corpus_f, queries_f = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_f = folder / "qrels" / f"{split}.tsv"
    for f in (corpus_f, queries_f, qrels_f):
        if not f.exists():
            raise InputError(f"{folder}: not a BEIR folder, {f.relative_to(folder)} is missing")
    try:
        corpus = {}
        for row in read_jsonl(corpus_f):
            title = (row.get("title") or "").strip()
            text = (row.get("text") or "").strip()
            # title + " " + text, as BEIR's own dense-retrieval evaluation joins them
            corpus[str(row["_id"])] = f"{title} {text}" if title else text
        queries = {str(r["_id"]): str(r["text"]) for r in read_jsonl(queries_f)}
    except (KeyError, ValueError) as exc:
        raise InputError(f"{folder}: malformed BEIR file ({exc}); rows need '_id' and 'text'") from exc
    relevant: dict[str, dict[str, int]] = {}
    with qrels_f.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header is None or len(header) < 3:
            raise InputError(f"{qrels_f}: expected a header 'query-id corpus-id score'")
        for i, row in enumerate(reader, 2):
            if len(row) < 3:
                raise InputError(f"{qrels_f}:{i}: expected 3 tab-separated columns")
            try:
                relevant.setdefault(row[0], {})[row[1]] = int(float(row[2]))
            except ValueError as exc:
                raise InputError(f"{qrels_f}:{i}: score {row[2]!r} is not a number") from exc
    return RetrievalDataset(
        name=folder.name, queries=queries, corpus=corpus, relevant=relevant, kind="beir", source=str(folder)
    )


def binary(dataset: RetrievalDataset) -> RetrievalDataset:
    """The same set with every positive grade set to 1 (as sentence-transformers' evaluator scores)."""
    return RetrievalDataset(
        name=dataset.name,
        queries=dict(dataset.queries),
        corpus=dataset.corpus,
        relevant={q: {d: 1 for d in rel} for q, rel in dataset.relevant.items()},
        kind=dataset.kind,
        source=dataset.source,
        info={**dataset.info, "relevance": "binary"},
    )


def from_pairs(pairs: Sequence[Pair], chunks: Sequence[Chunk], split: str = "val", name: str = "held-out") -> RetrievalDataset:
    """The held-out split of generated pairs, searched over every chunk of the run."""
    chosen = [p for p in pairs if p.split == split] if any(p.split for p in pairs) else list(pairs)
    if not chosen:
        raise InputError(f"{name}: no pairs in split {split!r} to evaluate on")
    corpus = {c.id: c.text for c in chunks}
    queries, relevant = {}, {}
    for i, p in enumerate(chosen):
        qid = f"q{i}"
        queries[qid] = p.query
        relevant[qid] = {p.positive_id: 1}
    return RetrievalDataset(
        name=name, queries=queries, corpus=corpus, relevant=relevant, kind="pairs", source=name
    )
