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
import errno
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
# a full disk
#
# Edge writes its segments through memory maps: on a full disk (a small tmpfs, a full volume) a
# write into a mapped page is a SIGBUS, which kills the process with "Bus error" and no message,
# and a shard recovering from it needs room again. So every write is preceded by a check of the
# free space against an estimate of what it takes, and a write that would not fit is refused
# before it starts: the collection stays as it was, and the next run, with room, carries on.

#: what the engine keeps free for its own growth beyond the points written (WAL segments and
#: flag files grow in steps of up to 1 MiB)
RESERVE_BYTES = 8 * 2**20
#: a new, empty collection (measured: 5.2 MiB for a 384-d one with ragtune's vectors and indexes)
NEW_SHARD_BYTES = 8 * 2**20
#: disk taken per byte of a point's vectors and payload: the write-ahead log and the segment
#: each hold it (measured 1.7 for 384-d chunks of 1,000 characters), with room to spare
WRITE_FACTOR = 4
#: a segment's in-memory files (plain vectors' chunk, payload indexes) at their full size, which
#: on tmpfs they take once loaded (measured: 42 MiB for a 384-d collection; see EdgeStore._room_to_load)
TMPFS_SEGMENT_BYTES = 48 * 2**20


def mount_point(path: Path) -> Path:
    """The mount point of the file system that holds ``path`` (the disk a message names)."""
    p = Path(os.path.abspath(path))
    while not p.exists():
        p = p.parent
    while not os.path.ismount(p):
        p = p.parent
    return p


def no_space(folder: Path, detail: str) -> InputError:
    """The one-line error for a disk without room for a write into ``folder``."""
    free = shutil.disk_usage(next(p for p in (folder, *folder.parents) if p.exists())).free
    return InputError(
        f"{folder}: no space left on the disk at {mount_point(folder)} (ENOSPC; {free / 2**20:.1f} MiB free): "
        f"{detail}; the collection is as it was before this write — free some space (or use a folder on "
        "another disk) and run again"
    )


def is_no_space(exc: BaseException) -> bool:
    """An ``OSError`` ENOSPC, or an engine error that carries it (``No space left on device (os error 28)``)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text


def file_system(path: Path) -> str:
    """The type of the file system that holds ``path`` (``tmpfs``, ``ext4`` …; "" where unknown)."""
    real, best, kind = os.path.realpath(path), "", ""
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 3:
                continue
            mnt = fields[1].replace("\\040", " ")
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, fields[2]
    return kind


def _holes(folder: Path) -> int:
    """Bytes of ``folder``'s files not allocated yet (Edge's mapped files are sparse: 32 MiB each)."""
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(OSError):
                st = os.stat(os.path.join(root, f))
                total += max(0, st.st_size - st.st_blocks * 512)
    return total


def _point_bytes(point: StoredPoint) -> int:
    """The bytes of a point's vectors and payload (before the engine's copies: :data:`WRITE_FACTOR`)."""
    n = sum(8 * len(v.indices) if isinstance(v, Sparse) else 4 * int(np.size(v)) for v in point.vectors.values())
    return n + sum(len(v) if isinstance(v, str) else 16 for v in point.payload.values())


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
                if _is_lock_error(exc):
                    raise InputError(
                        f"{path}: cannot open the embedded Qdrant store: another process holds it "
                        "(a running `ragtune serve` or index); stop it, or point at a Qdrant server with a URL"
                    ) from exc
                raise InputError(f"{path}: cannot open the embedded Qdrant store ({msg.splitlines()[0][:300]})") from exc
            self._open[key] = [shard, 1]
            return shard

    def holds(self, path: Path) -> bool:
        """Whether this process has the shard at ``path`` open."""
        with self._lock:
            return str(path.resolve()) in self._open

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


def _locked(wal: Path) -> bool:
    """Whether another process holds the shard whose write-ahead log is ``wal``: Edge locks that
    folder (``flock``) while a shard is open. Probed without opening the shard, which on a full
    disk could itself fail (see :meth:`EdgeStore._room_to_load`)."""
    import fcntl

    try:
        fd = os.open(wal, os.O_RDONLY)
    except OSError:
        return False  # no log yet: nothing holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _is_lock_error(exc: BaseException) -> bool:
    """Edge's error for a shard another process holds."""
    msg = str(exc)
    return "lock" in msg.lower() or "WouldBlock" in msg


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
            if config is None and not _SHARDS.holds(self._dir(name)):
                self._room_to_load(name)
            self._shards[name] = _SHARDS.acquire(self._dir(name), config)
        return self._shards[name]

    def _room_to_load(self, name: str) -> None:
        """On tmpfs every page of a mapped file that is touched takes memory, holes included, and
        loading a shard maps the files Edge keeps in memory (the graphed vectors, the payload
        indexes) whole: measured, the first load of a new 384-d collection took 42 MiB of a tmpfs
        (32 MiB for the plain vectors' chunk, 10 for the payload indexes), later ones nothing until
        a new chunk file appears. Refuse a load the disk has no room for, before it starts, as a
        write is refused; on other file systems reading a hole allocates nothing."""
        if file_system(self.folder) != "tmpfs":
            return
        shard = self._dir(name)
        kept = [*shard.glob("segments/*/payload_index"),
                *(d for g in self._graphs(name) for d in shard.glob(f"segments/*/vector_storage-{g}"))]
        need = sum(_holes(d) for d in kept)  # at most: a load writes nothing else, so no reserve
        self._room(need, f"opening collection {name!r} (on tmpfs its in-memory files take their full size)", 0)

    def _room(self, need: int, what: str, reserve: int = RESERVE_BYTES) -> None:
        """Refuse (one line naming the folder and its disk) a write of about ``need`` bytes that
        would leave less than ``reserve`` free: see "a full disk" above."""
        folder = next(p for p in (self.folder, *self.folder.parents) if p.exists())
        free = shutil.disk_usage(folder).free
        if free < need + reserve:
            raise no_space(self.folder, f"{what} needs about {(need + reserve) / 2**20:.1f} MiB")

    @contextlib.contextmanager
    def _writing(self) -> Any:
        """A write the engine or the OS refuses for want of space becomes the one-line error."""
        try:
            yield
        except InputError:
            raise
        except Exception as exc:
            if is_no_space(exc):
                raise no_space(self.folder, f"writing failed ({str(exc).splitlines()[0][:200]})") from exc
            raise

    def _clear_unfinished(self, name: str) -> None:
        """Remove the folder of a collection whose creation did not finish (its metadata, written
        last, is missing: a killed process, a full disk), so creating it again can proceed."""
        path = self._dir(name)
        if not path.exists() or self._meta_path(name).is_file() or _SHARDS.holds(path):
            return
        if _locked(path / "wal"):
            raise InputError(
                f"{path}: another process is creating this collection (a running `ragtune index`); wait for it"
            )
        log.warning("%s: removing an unfinished collection (its creation was interrupted)", path)
        shutil.rmtree(path)

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
                default_segment_number=_segments(),
                max_segment_size=self.MAX_SEGMENT_KB,
            ),
        )
        self._room(0, f"creating collection {name!r}")
        self._clear_unfinished(name)
        self._room(NEW_SHARD_BYTES, f"creating collection {name!r}")
        with self._writing():
            self._dir(name).parent.mkdir(parents=True, exist_ok=True)
            shard = self._shard(name, config)
            for key in ("doc_id", "source"):  # the keys ragtune deletes and filters by
                shard.update(qe.UpdateOperation.create_field_index(key, qe.PayloadSchemaType.Keyword))
            shard.flush()
            # the metadata last: a shard without it is not a collection yet (exists() is False)
            graphs = [k for k, v in vectors.items() if v.index and not v.multi and not v.sparse]
            write_json(self._meta_path(name), {META_KEY: meta, "graphs": graphs})

    def write_meta(self, name: str, meta: dict[str, Any]) -> None:
        with self._writing():
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
        self._room(WRITE_FACTOR * sum(_point_bytes(p) for p in points), f"writing {len(points)} points")
        self._written[name] = self._written.get(name, 0) + len(points)
        # the Python -> Rust conversion is most of an ingest's time: measured per point
        # (qdrant-edge-py 0.9), a list converts faster than a numpy array (9 vs 16 µs for 384
        # floats; 29 vs 55 µs for a 4 x 384 multivector), since the binding reads an array
        # element by element as numpy scalars
        with self._writing():
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

        self._room(0, "deleting points")
        with self._writing():
            self._shard(name).update(qe.UpdateOperation.delete_points_by_filter(_edge_filter(flt)))
        self._counts.pop(name, None)

    def delete_ids(self, name: str, ids: Sequence[str]) -> None:
        import qdrant_edge as qe

        self._room(0, "deleting points")
        with self._writing():
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
        with self._writing():
            if self.count(name) >= self.exact_below:
                # merging and indexing segments writes new ones beside the old: up to the shard's size
                # again, and on tmpfs each new segment's in-memory files whole (see _room_to_load)
                need = _disk_bytes(self._dir(name))
                if file_system(self.folder) == "tmpfs":
                    need += TMPFS_SEGMENT_BYTES * _segments()
                self._room(need, "building the search index")
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


def _segments() -> int:
    """Segments a shard keeps (one per core, at most 4), so an exact scan runs over them in parallel."""
    return max(1, min(4, os.cpu_count() or 1))


def _disk_bytes(folder: Path) -> int:
    """Bytes a folder's files take on disk (allocated blocks: Edge's files are sparse)."""
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total


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


