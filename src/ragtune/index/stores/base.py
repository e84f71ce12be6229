"""What every engine under :class:`ragtune.index.chunk_index.ChunkIndex` implements: the :class:`Store` protocol.

A *store* holds named collections of points (an id, named dense vectors and
multivectors, a JSON payload) and answers nearest-neighbour queries with an
optional prefetch stage and payload filter. Engines: :mod:`.edge` (Qdrant Edge,
the default for a folder), :mod:`.client` (qdrant-client: a server URL,
``:memory:``, legacy local-mode folders), :mod:`.milvus`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ragtune.index.filters import Where

log = logging.getLogger(__name__)


META_KEY = "ragtune"  # ragtune's metadata (model, fingerprint, dimension) within a collection's metadata

@dataclass
class StoredPoint:
    """One point to write: ``vectors`` maps a vector name to a 1-d (dense) or 2-d (multivector) float array."""

    id: str
    vectors: dict[str, Any]
    payload: dict[str, Any]


@dataclass
class Found:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorSpec:
    size: int
    multi: bool = False
    quantization: str = "none"  # none | scalar | binary
    index: bool = True  # searched through a graph (HNSW) where the engine builds one; False: scanned
    sparse: bool = False  # a sparse vector scored with the collection's IDF (BM25: ragtune.index.lexical)


@dataclass(frozen=True)
class Sparse:
    """A sparse vector: term ids and their weights (a chunk's or a query's BM25 terms)."""

    indices: list[int]
    values: list[float]


class Store(Protocol):
    """What :class:`ragtune.index.chunk_index.ChunkIndex` needs from an engine."""

    location: str

    def exists(self, name: str) -> bool: ...
    def read_meta(self, name: str) -> dict[str, Any]: ...
    def write_meta(self, name: str, meta: dict[str, Any]) -> None: ...
    def create(self, name: str, vectors: Mapping[str, VectorSpec], meta: dict[str, Any]) -> None: ...
    def count(self, name: str, exact: bool = True) -> int: ...
    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None: ...
    def delete(self, name: str, flt: Where) -> None: ...
    def delete_ids(self, name: str, ids: Sequence[str]) -> None: ...
    def scroll_payload(self, name: str, keys: Sequence[str], flt: Where | None = None) -> Iterable[tuple[str, dict]]: ...
    def query(
        self,
        name: str,
        using: str,
        vector: Any,
        limit: int,
        flt: Where | None = None,
        prefetch: tuple[str, Any, int] | None = None,
        quantized: bool = False,
        with_payload: bool = True,
    ) -> list[Found]: ...
    def optimize(self, name: str) -> None: ...
    def drop(self, name: str) -> None: ...
    def close(self) -> None: ...
    def records(
        self,
        name: str,
        ids: Sequence[str] | None = None,
        flt: Where | None = None,
        vector: str | None = None,
        limit: int | None = None,
    ) -> list[Record]: ...

def paged_records(fetch: Any, vector: str | None, limit: int | None) -> list[Record]:
    """Up to ``limit`` records of a scroll with full payloads: ``fetch(offset, page)`` returns
    ``(records, next_offset)``; each record's vector ``vector`` is kept (None when not asked)."""
    out: list[Record] = []
    offset = None
    while limit is None or len(out) < limit:
        page = 1024 if limit is None else min(1024, limit - len(out))
        found, offset = fetch(offset, page)
        out += [Record(str(r.id), dict(r.payload or {}), named_vector(r.vector, vector)) for r in found]
        if offset is None:
            break
    return out


def named_vector(vectors: Any, name: str | None) -> list[float] | None:
    """Vector ``name`` of a record's named vectors, flat (None when not asked or absent)."""
    if name is None or not isinstance(vectors, dict) or vectors.get(name) is None:
        return None
    return [float(x) for x in np.asarray(vectors[name], dtype=np.float32).reshape(-1)]


def paged(fetch: Any) -> Iterable[tuple[str, dict]]:
    """``(id, payload)`` of every record of a scroll: ``fetch(offset)`` returns ``(records, next_offset)``."""
    offset = None
    while True:
        records, offset = fetch(offset)
        for r in records:
            yield str(r.id), dict(r.payload or {})
        if offset is None:
            return


@dataclass
class Record:
    """A stored point read back whole: its full payload and, when asked, one dense vector."""

    id: str
    payload: dict[str, Any] = field(default_factory=dict)
    vector: list[float] | None = None
