"""Qdrant Edge: Qdrant's own Rust engine embedded in the process (``qdrant-edge-py``).

The default store for a folder: the server's segments, WAL and HNSW, so it
ingests and answers like a Qdrant server (measured in ``eval/scale.py``). One
shard folder per collection, ``FOLDER/edge/NAME/``, with ragtune's metadata
(model, fingerprint, dimension) beside it in ``FOLDER/edge/NAME.json``. A shard
is locked by the process that opens it; inside one process every opener shares
the same shard.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragtune._io import write_json
from ragtune.errors import InputError
from ragtune.index.filters import Condition, Where, translate_filter
from ragtune.index.stores.base import (
    META_KEY,
    Found,
    Record,
    Sparse,
    StoredPoint,
    VectorSpec,
    named_vector,
    paged,
    paged_records,
)

log = logging.getLogger(__name__)



# ---------------------------------------------------------------------------
# Qdrant Edge


class _Shards:
    """Open Edge shards of this process, shared by path and reference-counted.

    Edge locks a shard folder per *open*, even within one process; ragtune's
    callers (a server and a LlamaIndex retriever in one app, a test and the
    code it checks) legitimately open one folder twice, so they share it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, list[Any]] = {}  # path -> [shard, refcount]

    def acquire(self, path: Path, config: Any = None) -> Any:
        from qdrant_edge import EdgeShard

        key = str(path.resolve())
        with self._lock:
            if key in self._open:
                self._open[key][1] += 1
                return self._open[key][0]
            try:
                shard = EdgeShard.create(key, config) if config is not None else EdgeShard.load(key)
            except Exception as exc:  # Edge raises a plain Exception for a held lock
                msg = str(exc)
                if "lock" in msg.lower() or "WouldBlock" in msg:
                    raise InputError(
                        f"{path}: cannot open the embedded Qdrant store: another process holds it "
                        "(a running `ragtune serve` or index); stop it, or point at a Qdrant server with a URL"
                    ) from exc
                raise InputError(f"{path}: cannot open the embedded Qdrant store ({msg.splitlines()[0][:300]})") from exc
            self._open[key] = [shard, 1]
            return shard

    def release(self, path: Path) -> None:
        key = str(path.resolve())
        with self._lock:
            entry = self._open.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                del self._open[key]
                with contextlib.suppress(Exception):
                    entry[0].flush()
                entry[0].close()


_SHARDS = _Shards()


class EdgeStore:
    """Collections as Qdrant Edge shards under ``folder/edge/``.

    Args:
        folder: the store's folder (created when missing).
        hnsw_ef: HNSW search breadth (higher: better recall, slower).
        exact_below: collections with fewer points are searched exactly (no
            HNSW error at all; a brute-force scan of that many vectors is fast).

    Example:
        >>> store = EdgeStore("runs/demo/qdrant")  # doctest: +SKIP
        >>> store.exists("ragtune")  # doctest: +SKIP
        True
    """

    def __init__(self, folder: str | Path, hnsw_ef: int = 128, exact_below: int = 20_000) -> None:
        self.folder = Path(folder).expanduser()
        self.location = str(self.folder)
        self.hnsw_ef = hnsw_ef
        self.exact_below = exact_below
        self._shards: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self._written: dict[str, int] = {}
        self._graph_names: dict[str, set[str]] = {}

    def _dir(self, name: str) -> Path:
        return self.folder / "edge" / name

    def _meta_path(self, name: str) -> Path:
        return self.folder / "edge" / f"{name}.json"

    def _shard(self, name: str, config: Any = None) -> Any:
        if name not in self._shards:
            self._shards[name] = _SHARDS.acquire(self._dir(name), config)
        return self._shards[name]

    def exists(self, name: str) -> bool:
        return self._meta_path(name).is_file() and self._dir(name).is_dir()

    def _meta_file(self, name: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self._meta_path(name).read_text()))
        except (OSError, ValueError):
            return {}

    def read_meta(self, name: str) -> dict[str, Any]:
        return dict(self._meta_file(name).get(META_KEY) or {})

    def _graphs(self, name: str) -> set[str]:
        """Vector names with an HNSW graph (written at create)."""
        if name not in self._graph_names:
            self._graph_names[name] = set(self._meta_file(name).get("graphs") or [])
        return self._graph_names[name]

    def create(self, name: str, vectors: Mapping[str, VectorSpec], meta: dict[str, Any]) -> None:
        import qdrant_edge as qe

        def params(spec: VectorSpec) -> Any:
            quant = None
            if spec.quantization == "scalar":
                quant = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True)
            elif spec.quantization == "binary":
                quant = qe.BinaryQuantizationConfig(always_ram=True)
            graph = spec.index and not spec.multi
            return qe.EdgeVectorParams(
                size=spec.size,
                distance=qe.Distance.Cosine,
                multivector_config=qe.MultiVectorConfig(comparator=qe.MultiVectorComparator.MaxSim) if spec.multi else None,
                quantization_config=quant,
                # Measured in eval/scale.py (100k chunks, 400k windows): an HNSW graph over a
                # max-sim multivector took 290 s to build and found 0.79 of the exact top-10
                # (0.90 at ef=512), while the exact max-sim scan finds all of them in ~25 ms.
                # So multivectors (and the small prefetch vectors) are scanned, not graphed;
                # only the plain dense vector gets HNSW.
                hnsw_config=None if graph else qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
                # window vectors are most of the store: half the memory in float16
                # (cosine scores move by < 1e-3)
                datatype=qe.VectorStorageDatatype.Float16 if spec.multi else None,
                memory=None if graph else qe.Memory.Cold,
            )

        # payload (chunk text, LlamaIndex node JSON) on disk, as a Qdrant server's default: it is
        # the bulk of a point and is read only for the hits; one segment per core, so an exact
        # scan runs over them in parallel
        config = qe.EdgeConfig(
            vectors={k: params(v) for k, v in vectors.items() if not v.sparse},
            sparse_vectors={k: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)
                            for k, v in vectors.items() if v.sparse} or None,
            on_disk_payload=True,
            optimizers=qe.EdgeOptimizersConfig(
                default_segment_number=max(1, min(4, os.cpu_count() or 1)),
                max_segment_size=self.MAX_SEGMENT_KB,
            ),
        )
        self._dir(name).parent.mkdir(parents=True, exist_ok=True)
        shard = self._shard(name, config)
        for key in ("doc_id", "source"):  # the keys ragtune deletes and filters by
            shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
        shard.flush()
        # the metadata last: a shard without it is not a collection yet (exists() is False)
        graphs = [k for k, v in vectors.items() if v.index and not v.multi and not v.sparse]
        write_json(self._meta_path(name), {META_KEY: meta, "graphs": graphs})

    def write_meta(self, name: str, meta: dict[str, Any]) -> None:
        write_json(self._meta_path(name), {**self._meta_file(name), META_KEY: meta})

    def count(self, name: str, exact: bool = True) -> int:
        import qdrant_edge as qe

        n = int(self._shard(name).count(qe.CountRequest(exact=exact)))
        self._counts[name] = n
        return n

    #: points written between index builds during a long ingest: optimizing as it goes keeps
    #: the unindexed (in-memory, appendable) segment, and the peak memory of a build, bounded
    OPTIMIZE_EVERY = 25_000
    #: a segment stops growing at this size (KB of vectors; ≈25,000 chunks of a 384-d model with
    #: 4 windows). Without a cap every build merged all points into ``default_segment_number``
    #: segments and rebuilt the whole graph, so ingest slowed as the collection grew (measured,
    #: 100k chunks on 2 cores: 56.7 s with the merge-everything default, 38 s with this cap)
    MAX_SEGMENT_KB = 150_000

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        import qdrant_edge as qe

        shard = self._shard(name)
        self._written[name] = self._written.get(name, 0) + len(points)
        # the Python -> Rust conversion is most of an ingest's time: measured per point
        # (qdrant-edge-py 0.9), a list converts faster than a numpy array (9 vs 16 µs for 384
        # floats; 29 vs 55 µs for a 4 x 384 multivector), since the binding reads an array
        # element by element as numpy scalars
        shard.update(
            qe.UpdateOperation.upsert_points(
                [qe.Point(p.id, {k: _edge_vector(v) for k, v in p.vectors.items()}, p.payload) for p in points]
            )
        )
        self._counts.pop(name, None)
        if self._written[name] >= self.OPTIMIZE_EVERY:
            self.optimize(name)

    def delete(self, name: str, flt: Where) -> None:
        import qdrant_edge as qe

        self._shard(name).update(qe.UpdateOperation.delete_points_by_filter(_edge_filter(flt)))
        self._counts.pop(name, None)

    def delete_ids(self, name: str, ids: Sequence[str]) -> None:
        import qdrant_edge as qe

        self._shard(name).update(qe.UpdateOperation.delete_points(list(ids)))
        self._counts.pop(name, None)

    def scroll_payload(self, name: str, keys: Sequence[str], flt: Where | None = None) -> Iterable[tuple[str, dict]]:
        import qdrant_edge as qe

        shard = self._shard(name)
        return paged(
            lambda offset: shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1024, filter=_edge_filter(flt) if flt else None,
                                 with_payload=list(keys), with_vector=False)
            )
        )

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
    ) -> list[Found]:
        import qdrant_edge as qe

        shard = self._shard(name)
        n = self._counts.get(name)
        if n is None:
            n = self.count(name)
        quant = qe.QuantizationSearchParams(rescore=True, oversampling=2.0) if quantized else None

        graphs = self._graphs(name)

        def params(using: str) -> Any:
            if isinstance(vector, Sparse):  # a sparse vector is searched through its inverted index
                return None
            # vectors without a graph (multivectors, small prefetch ones; see create) and small collections are scanned
            return qe.SearchParams(hnsw_ef=self.hnsw_ef, exact=using not in graphs or n < self.exact_below,
                                   quantization=quant)

        ef = _edge_filter(flt) if flt else None
        pre = None
        if prefetch is not None:
            p_using, p_vector, p_limit = prefetch
            pre = [qe.Prefetch(limit=p_limit, query=qe.Query.Nearest(p_vector, using=p_using),
                               params=params(p_using), filter=ef)]
        res = shard.query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(_edge_vector(vector) if isinstance(vector, Sparse) else vector, using=using),
                prefetches=pre,
                filter=ef,
                with_payload=with_payload,
                with_vector=False,
                params=params(using),
            )
        )
        return [Found(str(p.id), float(p.score), dict(p.payload or {})) for p in res]

    def optimize(self, name: str) -> None:
        """Build HNSW and merge segments (Edge searches unindexed segments by brute force).

        A collection under ``exact_below`` points is searched exactly anyway,
        so its graph would never be used: it is only flushed.
        """
        shard = self._shard(name)
        self._written[name] = 0
        if self.count(name) >= self.exact_below:
            shard.optimize()
        shard.flush()

    def _release(self, name: str) -> None:
        if self._shards.pop(name, None) is not None:
            _SHARDS.release(self._dir(name))
        self._counts.pop(name, None)
        self._written.pop(name, None)
        self._graph_names.pop(name, None)

    def drop(self, name: str) -> None:
        """Delete collection ``name`` (its folder and metadata) if present."""
        self._release(name)
        self._meta_path(name).unlink(missing_ok=True)
        shutil.rmtree(self._dir(name), ignore_errors=True)

    def swap(self, staged: str, name: str) -> None:
        """Make the complete collection ``staged`` be ``name``, replacing what ``name`` held.

        Edge has no aliases; folders are renamed. ``name`` stops existing (its
        metadata file goes first) before the staged folder takes its place, so
        an interruption leaves no collection that looks complete but is not:
        the next run builds it again.
        """
        self.optimize(staged)
        self._release(staged)
        self._release(name)
        self._meta_path(name).unlink(missing_ok=True)
        old = self._dir(name).with_name(f"{name}.replaced")
        shutil.rmtree(old, ignore_errors=True)
        if self._dir(name).exists():
            self._dir(name).rename(old)
        self._dir(staged).rename(self._dir(name))
        self._meta_path(staged).rename(self._meta_path(name))
        shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        for name in list(self._shards):
            self._release(name)

    def records(
        self,
        name: str,
        ids: Sequence[str] | None = None,
        flt: Where | None = None,
        vector: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Points by id and/or filter (every point when neither), with full payloads and vector ``vector``."""
        import qdrant_edge as qe

        if ids is not None and not ids:
            return []
        shard = self._shard(name)
        with_vector = [vector] if vector else False
        if flt is None and ids is not None:  # by id alone: a lookup, no scan
            found = shard.retrieve(list(ids), with_payload=True, with_vector=with_vector)
            return [Record(str(r.id), dict(r.payload or {}), named_vector(r.vector, vector)) for r in found][:limit]
        must: list[Any] = [qe.HasIdCondition(set(ids))] if ids is not None else []
        if flt is not None:
            must.append(_edge_filter(flt))
        return paged_records(
            lambda offset, page: shard.scroll(
                qe.ScrollRequest(offset=offset, limit=page, filter=qe.Filter(must=must) if must else None,
                                 with_payload=True, with_vector=with_vector)
            ),
            vector, limit,
        )


def _edge_vector(v: Any) -> Any:
    if isinstance(v, Sparse):
        import qdrant_edge as qe

        return qe.SparseVector(v.indices, v.values)
    return np.asarray(v, dtype=np.float32).tolist()



def _edge_filter(flt: Where) -> Any:
    import qdrant_edge as qe

    def field(c: Condition) -> Any:
        if c.op == "eq":
            return qe.FieldCondition(key=c.key, match=qe.MatchValue(c.value))
        if c.op == "in":
            return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(c.value)))
        if c.op == "nin":
            return qe.FieldCondition(key=c.key, match=qe.MatchExcept(list(c.value)))
        return qe.FieldCondition(key=c.key, range=qe.RangeFloat(**{c.op: float(c.value)}))

    return translate_filter(flt, field, lambda must, should, must_not: qe.Filter(must=must, should=should, must_not=must_not))


