"""Milvus under :class:`ragtune.index.chunk_index.ChunkIndex`: Milvus Lite in a local ``.db``, or a Milvus server.

``--qdrant milvus:runs/demo/milvus.db`` opens Milvus Lite (embedded, in this
process, one database folder on disk); ``--qdrant milvus:http://host:19530`` a
Milvus server; the same code serves both (pymilvus ``MilvusClient``). Needs the
``milvus`` extra: ``pip install 'ragtune[milvus]'``.

A ragtune collection ``NAME`` is two Milvus collections:

- ``NAME`` — one row per chunk: ``id`` (the chunk's UUID), ``payload`` (a JSON
  field holding the same dict the Qdrant engines store), ``n_windows`` and one
  float vector per plain vector (``text_dense``, ``text_dense_small``). Its
  collection properties hold ragtune's metadata (model, fingerprint, dimension).
- ``NAME_windows`` — one row per window: ``id`` (``CHUNK:i``, so a chunk's
  windows are found by id, never by a scan), ``owner`` (the chunk id),
  ``payload`` (the chunk's payload less its text, so filters apply to windows
  too) and the window vectors (``windows``, ``windows_small``).

Max-sim: Milvus Lite has plain float vectors only (no array-of-vectors /
``MAX_SIM`` field, which only the Milvus 2.6 server has), so each window is a
row and a chunk scores by its best window: a search of the windows grouped by
``owner`` (Milvus ``group_by_field``, one hit per chunk), which is max-sim for
the one-vector query ChunkIndex sends. Grouping is left to Milvus (Lite and
the server both have it) rather than over-fetching in Python: a server's
group-by searches on until it has ``limit`` chunks; Lite groups the
``10 × limit`` nearest windows, and is asked again for more when that gave
fewer chunks than asked (:meth:`MilvusStore._search`).

Servers older than Milvus 2.4 (the embedded ``milvus==2.3.5`` server the tests run) hold one vector
field per collection and have no grouping search: there each further vector gets a collection of its
own (``NAME_v<vector>``: the rows' ids, slim payloads for filters, and the vector; property
:data:`PARTS_KEY` says where each lives), and windows are grouped by ``owner`` here, from as many
nearest windows as it takes.

Cosine everywhere; scores are cosine similarities, as Qdrant returns them.
Milvus has no prefetch: two-stage search finds the candidates on the small
vectors, fetches their full vectors by id and rescores them exactly here. Scalar
quantization is ``HNSW_SQ`` (SQ8); binary quantization is refused.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import InputError
from ragtune.index.filters import Condition, Where, translate_filter
from ragtune.index.stores.base import META_KEY, Found, Record, StoredPoint, VectorSpec
from ragtune.providers import not_installed

MILVUS_PREFIX = "milvus:"
WINDOWS_SUFFIX = "_windows"  # a single '_' before a letter never comes out of _collection_name's escaping
MULTI_KEY = "ragtune.multi"  # collection property: the names of the multivectors (held as window rows)
PARTS_KEY = "ragtune.parts"  # collection property: {vector: suffix of the collection of its own} (Milvus < 2.4)
SIDE_PREFIX = "_v"  # NAME_v<vector>: a vector's own collection (a single '_' before a letter, as WINDOWS_SUFFIX)
SLIM_OUT = ("text", "_node_content", "windows")  # payload keys window rows do not copy (the bulk of a payload)
ID_LEN = 1024
MAX_LIMIT = 16_384  # a Milvus search returns at most this many hits
PAGE = 1024  # rows per page of a scroll
TRUE, FALSE = 'id != ""', 'id == ""'  # ids are never empty: an always/never matching filter on both collections


def parse_location(location: str) -> tuple[str, Path | None]:
    """``milvus:PATH.db`` → (path, the path); ``milvus:http(s)://host:port`` → (uri, None).

    Example:
        >>> parse_location("milvus:http://localhost:19530")
        ('http://localhost:19530', None)
    """
    rest = location[len(MILVUS_PREFIX):] if location.startswith(MILVUS_PREFIX) else location
    if rest.startswith(("http://", "https://", "tcp://")):
        return rest, None
    if not rest:
        raise InputError(f"--qdrant {location}: give milvus:PATH.db (Milvus Lite) or milvus:http://host:19530")
    path = Path(rest).expanduser()
    if path.suffix != ".db":
        raise InputError(f"--qdrant {location}: a Milvus Lite database is a path ending in .db (milvus:{path}.db)")
    return str(path), path


def check_milvus_location(location: str) -> str:
    """Refuse a Milvus Lite database that does not exist (readers call this, as for a Qdrant folder)."""
    _, path = parse_location(location)
    if path is not None and not path.is_dir():
        raise InputError(
            f"--qdrant {location}: no such Milvus Lite database; give the path `ragtune index --qdrant "
            "milvus:PATH.db` wrote, or milvus:http://host:19530"
        )
    return location


class _Lite:
    """Milvus Lite databases this process opened, by path: the last store to close releases the file lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}

    def acquire(self, path: Path) -> None:
        key = str(path.resolve())
        with self._lock:
            self._users[key] = self._users.get(key, 0) + 1

    def release(self, path: Path) -> None:
        key = str(path.resolve())
        with self._lock:
            self._users[key] = self._users.get(key, 1) - 1
            if self._users[key] > 0:
                return
            del self._users[key]
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(key)


_LITE = _Lite()


def _quiet_lock(record: logging.LogRecord) -> bool:
    """Drop Milvus Lite's traceback for a database another process holds: the InputError says it in a line."""
    return not (record.exc_info and type(record.exc_info[1]).__name__ == "DataDirLockedError")


def _quiet_index_type(record: logging.LogRecord) -> bool:
    """Drop pymilvus' traceback for an index type the server lacks: :meth:`MilvusStore.create` says it in a line."""
    return "invalid index type" not in record.getMessage()


class MilvusStore:
    """Collections in Milvus Lite (``milvus:PATH.db``) or a Milvus server (``milvus:http://…``).

    Args:
        location: ``milvus:PATH.db`` (created, with its parent folders, when
            missing) or ``milvus:http(s)://host:port``.
        api_key: a Milvus server's token (``user:password`` or an API key).
        timeout: seconds per request.
        hnsw_ef: HNSW search breadth (higher: better recall, slower).

    Example:
        >>> store = MilvusStore("milvus:runs/demo/milvus.db")  # doctest: +SKIP
        >>> store.exists("ragtune")  # doctest: +SKIP
        True
    """

    def __init__(self, location: str, api_key: str | None = None, timeout: int = 60, hnsw_ef: int = 128) -> None:
        uri, self.path = parse_location(location)
        self.location = location
        self.hnsw_ef = hnsw_ef
        try:
            from pymilvus import MilvusClient
            from pymilvus.exceptions import MilvusException

            if self.path is not None:
                import milvus_lite  # noqa: F401 - pymilvus opens a .db through it
        except ImportError as exc:
            raise not_installed("pymilvus", where=f"--qdrant {location}", cause=exc) from exc
        if self.path is not None:
            if self.path.exists() and not self.path.is_dir():
                raise InputError(f"{self.path}: not a Milvus Lite database (this milvus-lite keeps a folder)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        logging.getLogger("milvus_lite.server_manager").addFilter(_quiet_lock)
        logging.getLogger("pymilvus.decorators").addFilter(_quiet_index_type)
        try:
            self.client = MilvusClient(uri=uri, token=api_key or "", timeout=timeout)
        except MilvusException as exc:
            if self.path is not None:
                raise InputError(
                    f"{self.path}: cannot open the Milvus Lite database: another process may hold it (a running "
                    "`ragtune serve` or index); stop it, or serve from a Milvus server (milvus:http://host:19530)"
                ) from exc
            first = (str(getattr(exc, "message", exc)).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise InputError(f"{uri}: cannot reach Milvus ({first})") from exc
        if self.path is not None:
            _LITE.acquire(self.path)
        self._loaded: set[str] = set()
        self._layouts: dict[str, _Layout] = {}

    # helpers -------------------------------------------------------------
    def _ready(self, collection: str) -> str:
        """Load a Milvus collection once (Milvus searches only loaded ones; reopened ones are not)."""
        if collection not in self._loaded:
            self.client.load_collection(collection)
            self._loaded.add(collection)
        return collection

    def _layout(self, name: str) -> _Layout:
        if name not in self._layouts:
            props = self.client.describe_collection(_collection_name(name)).get("properties") or {}
            self._layouts[name] = _Layout(frozenset(json.loads(props.get(MULTI_KEY) or "[]")),
                                          dict(json.loads(props.get(PARTS_KEY) or "{}")))
        return self._layouts[name]

    def _collections(self, name: str) -> list[str]:
        """The Milvus collections of ragtune collection ``name`` that exist: its vectors' own ones, the
        windows, the chunks last (no other name starts so: see :func:`_collection_name`)."""
        main = _collection_name(name)
        found = set(self.client.list_collections())
        return [*sorted(c for c in found if c.startswith(main + SIDE_PREFIX)),
                *[c for c in (main + WINDOWS_SUFFIX, main) if c in found]]

    @cached_property
    def _several_vectors(self) -> bool:
        """Whether this Milvus holds several vector fields in a collection and groups a search by a field:
        Milvus Lite and servers from 2.4 do; older servers (2.3) hold one, and group nothing."""
        try:
            version = str(self.client.get_server_version())
        except Exception:  # noqa: BLE001 - a server that does not say is taken to be a current one
            return True
        found = re.match(r"v?(\d+)\.(\d+)", version)  # "v2.3.5-lite", "2.6.2"; Lite: "milvus_lite-3.2.2"
        return found is None or (int(found[1]), int(found[2])) >= (2, 4)

    # Store ---------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return bool(self.client.has_collection(_collection_name(name)))

    def read_meta(self, name: str) -> dict[str, Any]:
        props = self.client.describe_collection(_collection_name(name)).get("properties") or {}
        return dict(json.loads(props.get(META_KEY) or "{}"))

    def write_meta(self, name: str, meta: dict[str, Any]) -> None:
        """Replace ragtune's metadata of collection ``name`` (a collection property, as :meth:`create` set it)."""
        self.client.alter_collection_properties(_collection_name(name), properties={META_KEY: json.dumps(meta)})

    def create(self, name: str, vectors: Mapping[str, VectorSpec], meta: dict[str, Any]) -> None:
        from pymilvus import DataType, MilvusClient
        from pymilvus.exceptions import MilvusException

        if any(v.quantization == "binary" for v in vectors.values()):
            raise InputError("quantization='binary': Milvus has no binary quantization of float vectors; "
                             "use 'scalar' (HNSW_SQ) or 'none'")
        multi = [k for k, v in vectors.items() if v.multi]
        plain = [k for k in vectors if k not in multi]
        # one vector field a collection (Milvus < 2.4): the first plain vector stays with the chunks, the
        # first multivector with the windows, and each other gets its own collection
        layout = _Layout(frozenset(multi), {} if self._several_vectors else
                         {k: SIDE_PREFIX + _field(k) for group in (plain, multi) for k in group[1:]})
        main = _collection_name(name)

        def make(collection: str, key: str | None, specs: dict[str, VectorSpec], props: dict[str, str]) -> None:
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_LEN)
            if key == "owner":  # a window row: ID:i of chunk ``owner``
                schema.add_field("owner", DataType.VARCHAR, max_length=ID_LEN)
            elif key == "n_windows":  # a chunk's windows are rows ID:0 … ID:n-1 of the windows collection
                schema.add_field("n_windows", DataType.INT64)
            schema.add_field("payload", DataType.JSON)
            index = self.client.prepare_index_params()
            for k, spec in specs.items():
                schema.add_field(_field(k), DataType.FLOAT_VECTOR, dim=spec.size)
                index.add_index(_field(k), metric_type="COSINE", **_index_params(spec))
            self.client.drop_collection(collection)  # what an interrupted create left
            self.client.create_collection(collection, schema=schema, consistency_level="Strong", properties=props)
            # sync=False: an empty collection's index is ready at once, and pymilvus' wait for it asks Milvus
            # Lite for a timestamp it does not implement (an error logged per index, then half a second)
            self.client.create_index(collection, index, sync=False)
            self._ready(collection)

        try:
            for k, suffix in layout.side.items():
                make(main + suffix, "owner" if k in multi else None, {k: vectors[k]}, {})
            make(main + WINDOWS_SUFFIX, "owner", {k: vectors[k] for k in multi if k not in layout.side}, {})
            # the chunk collection, with the metadata, last: until it exists the collection does not (exists())
            make(main, "n_windows", {k: vectors[k] for k in plain if k not in layout.side},
                 {META_KEY: json.dumps(meta), MULTI_KEY: json.dumps(multi),
                  **({PARTS_KEY: json.dumps(layout.side)} if layout.side else {})})
        except MilvusException as exc:
            scalar = any(_index_params(v)["index_type"] == "HNSW_SQ" for v in vectors.values())
            if not (scalar and "invalid index type" in str(exc)):
                raise
            self.drop(name)
            raise InputError(f"{self.location}: this Milvus ({self.client.get_server_version()}) has no HNSW_SQ index "
                             "for quantization='scalar'; use quantization 'none', or Milvus Lite or a server that "
                             "has HNSW_SQ") from exc
        self._layouts[name] = layout

    def count(self, name: str, exact: bool = True) -> int:
        rows = self.client.query(self._ready(_collection_name(name)), filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _windows_of(self, name: str, ids: Sequence[str]) -> dict[str, int]:
        """How many windows each of these chunks has stored (absent chunks left out)."""
        out: dict[str, int] = {}
        main = self._ready(_collection_name(name))
        for i in range(0, len(ids), 1000):
            for r in self.client.get(main, ids=list(ids[i : i + 1000]), output_fields=["n_windows"]):
                out[str(r["id"])] = int(r["n_windows"])
        return out

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        if not points:
            return
        layout = self._layout(name)
        main = _collection_name(name)
        had = self._windows_of(name, [p.id for p in points])
        rows: list[dict[str, Any]] = []
        parts: dict[str, list[dict[str, Any]]] = {}  # collection suffix → window rows or a vector's own rows
        stale: list[str] = []
        for p in points:
            per = {k: np.asarray(v, dtype=np.float32).reshape(-1, np.shape(v)[-1])
                   for k, v in p.vectors.items() if k in layout.multi}
            n = min((len(a) for a in per.values()), default=0)
            slim = {k: v for k, v in p.payload.items() if k not in SLIM_OUT}
            for i in range(n):
                window = {"id": f"{p.id}:{i}", "owner": p.id, "payload": slim}
                for suffix in {layout.suffix(k) for k in per}:
                    parts.setdefault(suffix, []).append(
                        {**window, **{_field(k): a[i].tolist() for k, a in per.items() if layout.suffix(k) == suffix}})
            stale += [f"{p.id}:{i}" for i in range(n, had.get(p.id, 0))]  # a previous version had more windows
            for k, v in p.vectors.items():
                if k not in layout.multi and k in layout.side:
                    parts.setdefault(layout.side[k], []).append({"id": p.id, "payload": slim, _field(k): _vector(v)})
            rows.append({"id": p.id, "n_windows": n, "payload": p.payload,
                         **{_field(k): _vector(v) for k, v in p.vectors.items()
                            if k not in layout.multi and k not in layout.side}})
        # windows and the vectors' own rows first, then the chunk: a chunk row (what sync() counts as
        # indexed) never lacks its windows
        for suffix, part in parts.items():
            self.client.upsert(self._ready(main + suffix), part)
        if stale:
            for suffix in layout.window_suffixes():
                self.client.delete(self._ready(main + suffix), ids=stale)
        self.client.upsert(self._ready(main), rows)

    def delete(self, name: str, flt: Where) -> None:
        self.delete_ids(name, [pid for pid, _ in self.scroll_payload(name, [], flt)])

    def delete_ids(self, name: str, ids: Sequence[str]) -> None:
        layout = self._layout(name)
        main = self._ready(_collection_name(name))
        ids = list(ids)
        for i in range(0, len(ids), 1000):
            batch = ids[i : i + 1000]
            # the windows first: an interrupted delete leaves a chunk row, which the next sync() removes again
            wids = [f"{pid}:{j}" for pid, n in self._windows_of(name, batch).items() for j in range(n)]
            if wids:
                for suffix in layout.window_suffixes():
                    self.client.delete(self._ready(main + suffix), ids=wids)
            for k, suffix in layout.side.items():
                if k not in layout.multi:
                    self.client.delete(self._ready(main + suffix), ids=batch)
            self.client.delete(main, ids=batch)

    def scroll_payload(self, name: str, keys: Sequence[str], flt: Where | None = None) -> Iterable[tuple[str, dict]]:
        # pages by id (``id > last``), as pymilvus' query iterator does, without its timestamp call
        # (Milvus Lite does not implement it and logs an error at every scroll); ``iterator`` asks
        # Milvus for each page in id order
        collection = self._ready(_collection_name(name))
        expr = milvus_filter(flt) if flt else ""
        last: str | None = None
        while True:
            cursor = [f"id > {_literal(last)}"] if last is not None else []
            rows = self.client.query(collection, filter=" and ".join([*cursor, *([f"({expr})"] if expr else [])]),
                                     limit=PAGE, output_fields=["payload"] if keys else ["id"], iterator="True")
            for r in rows:
                payload = r.get("payload") or {}
                yield str(r["id"]), {k: payload[k] for k in keys if k in payload}
            if len(rows) < PAGE:
                return
            last = max(str(r["id"]) for r in rows)

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
        if flt is not None and not isinstance(flt, Where):
            raise InputError(f"a {type(flt).__name__} filter is Qdrant's; on Milvus pass a ragtune Where or {{key: value}}")
        q = np.asarray(vector, dtype=np.float32)
        if q.ndim == 2:
            if len(q) != 1:
                raise InputError("the Milvus store scores a multivector query of one vector only")
            q = q[0]
        expr = milvus_filter(flt) if flt else ""
        if prefetch is None:
            hits = self._search(name, using, q, limit, expr, quantized)
        else:  # Milvus has no prefetch: the candidates on the small vectors, rescored exactly on the full ones
            p_using, p_vector, p_limit = prefetch
            hits = self._rescore(name, using, q, [h[0] for h in self._search(name, p_using, p_vector, p_limit, expr, False)])[:limit]
        if not hits:
            return []
        rows = self.client.get(self._ready(_collection_name(name)), ids=[h[0] for h in hits],
                               output_fields=["payload"])
        payloads = {str(r["id"]): dict(r.get("payload") or {}) for r in rows}
        # a window whose chunk is gone (an interrupted delete) finds nothing here, and is left out
        return [Found(pid, score, payloads[pid]) for pid, score in hits if pid in payloads]

    def _rescore(self, name: str, using: str, q: np.ndarray, ids: list[str]) -> list[tuple[str, float]]:
        """``ids`` ranked by cosine to ``q`` on vector ``using`` (a multivector: its best window)."""
        if not ids:
            return []
        layout = self._layout(name)
        multi = using in layout.multi
        keys = [f"{pid}:{j}" for pid, n in self._windows_of(name, ids).items() for j in range(n)] if multi else ids
        collection = self._ready(_collection_name(name) + layout.suffix(using))
        best: dict[str, float] = {}
        for i in range(0, len(keys), 1000):
            rows = self.client.get(collection, ids=keys[i : i + 1000], output_fields=[_field(using), *(["owner"] if multi else [])])
            if not rows:
                continue
            vecs = np.asarray([r[_field(using)] for r in rows], dtype=np.float32)
            scores = vecs @ q / np.maximum(np.linalg.norm(vecs, axis=1) * np.linalg.norm(q), 1e-12)
            for r, s in zip(rows, scores.tolist()):
                pid = str(r["owner"] if multi else r["id"])
                best[pid] = max(s, best.get(pid, -2.0))
        return sorted(best.items(), key=lambda kv: -kv[1])

    def _search(self, name: str, using: str, q: Any, limit: int, expr: str, quantized: bool) -> list[tuple[str, float]]:
        """``(chunk id, cosine)`` of the ``limit`` best chunks on vector ``using`` (a multivector: best window)."""
        q = np.asarray(q, dtype=np.float32).reshape(-1)
        layout = self._layout(name)
        multi = using in layout.multi
        grouped = multi and self._several_vectors  # Milvus groups the windows by chunk (Lite, servers from 2.4)
        collection = self._ready(_collection_name(name) + layout.suffix(using))

        def search(n: int) -> tuple[list[tuple[str, float]], int]:
            """The best chunks among ``n`` hits, and how many hits came (fewer than ``n``: there are no more)."""
            params: dict[str, Any] = {"ef": max(self.hnsw_ef, n)}
            if quantized:
                params["refine_k"] = 2.0  # HNSW_SQ re-scores twice as many on the full vectors, like Qdrant's rescore
            res = self.client.search(
                collection, data=[q.tolist()], anns_field=_field(using), limit=n, filter=expr,
                output_fields=["owner"] if multi else [], search_params={"metric_type": "COSINE", "params": params},
                **({"group_by_field": "owner", "group_size": 1} if grouped else {}),
            )
            hits = [(str(h["entity"]["owner"] if multi else h["id"]), float(h["distance"])) for h in res[0]]
            best: dict[str, float] = {}
            for pid, score in hits:  # nearest first: a chunk's first window is its best
                best.setdefault(pid, score)
            return list(best.items()), len(hits)

        asked = min(limit, MAX_LIMIT)
        hits, came = search(asked)
        # Milvus Lite groups the 10 × limit nearest windows, and without grouping (Milvus < 2.4) the
        # windows come one by one: chunks with many windows near the query can crowd the others out,
        # leaving fewer chunks than asked; ask for more until no more come
        while multi and len(hits) < limit and asked < MAX_LIMIT and (grouped or came == asked):
            asked = min(asked * 4, MAX_LIMIT)
            more, came = search(asked)
            if grouped and len(more) <= len(hits):
                break
            hits = more
        return hits[:limit]

    def optimize(self, name: str) -> None:
        """Flush what was written (Milvus Lite: to segments on disk, where it builds their indexes)."""
        for collection in self._collections(name):  # the chunks last
            self.client.flush(collection)

    def drop(self, name: str) -> None:
        main = _collection_name(name)
        # the chunk collection first: then it no longer exists()
        for collection in sorted(self._collections(name), key=lambda c: c != main):
            self.client.drop_collection(collection)
            self._loaded.discard(collection)
        self._layouts.pop(name, None)

    def swap(self, staged: str, name: str) -> None:
        """Make the complete collection ``staged`` be ``name`` (Milvus renames collections).

        ``name`` stops existing first, so an interruption leaves no collection
        that looks complete but is not: the next run builds it again.
        """
        self.optimize(staged)
        self.drop(name)
        old, new = _collection_name(staged), _collection_name(name)
        for collection in self._collections(staged):  # the chunks last
            self.client.rename_collection(collection, new + collection[len(old):])
            self._loaded.discard(collection)
        self._layouts.pop(staged, None)

    def close(self) -> None:
        if getattr(self, "client", None) is None:
            return
        self.client.close()
        self.client = None
        if self.path is not None:
            _LITE.release(self.path)

    def records(
        self,
        name: str,
        ids: Sequence[str] | None = None,
        flt: Where | None = None,
        vector: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Points by id and/or filter (every point when neither), with full payloads and vector ``vector``."""
        if ids is not None and not ids:
            return []
        layout = self._layout(name)
        if vector is not None and vector in layout.multi:
            raise InputError(f"vector {vector!r} is a multivector: read back the plain ones only")
        main = self._ready(_collection_name(name))
        own = layout.side.get(vector or "")  # the vector lives in a collection of its own (Milvus < 2.4)
        fields = ["payload", *([_field(vector)] if vector and not own else [])]
        expr = [f"({milvus_filter(flt)})"] if flt is not None else []

        def record(row: dict[str, Any]) -> Record:
            vec = row.get(_field(vector)) if vector else None
            return Record(str(row["id"]), dict(row.get("payload") or {}),
                          None if vec is None else [float(x) for x in vec])

        out: list[Record] = []
        if ids is not None:
            wanted = list(dict.fromkeys(ids))
            for i in range(0, len(wanted), 1000):
                batch = f"id in {_literal(wanted[i : i + 1000])}"
                out += map(record, self.client.query(main, filter=" and ".join([batch, *expr]), output_fields=fields))
        else:
            last: str | None = None  # pages by id, as scroll_payload does
            while limit is None or len(out) < limit:
                cursor = [f"id > {_literal(last)}"] if last is not None else []
                rows = self.client.query(main, filter=" and ".join([*cursor, *expr]), limit=PAGE,
                                         output_fields=fields, iterator="True")
                out += map(record, rows)
                if len(rows) < PAGE:
                    break
                last = max(str(r["id"]) for r in rows)
        out = out[:limit]
        if vector and own:
            for i in range(0, len(out), 1000):
                rows = self.client.get(self._ready(main + own), ids=[r.id for r in out[i : i + 1000]],
                                       output_fields=[_field(vector)])
                vecs = {str(r["id"]): [float(x) for x in r[_field(vector)]] for r in rows}
                for r in out[i : i + 1000]:
                    r.vector = vecs.get(r.id)
        return out


@dataclass(frozen=True)
class _Layout:
    """Where a ragtune collection's vectors live: plain ones in the chunk collection, multivectors in the
    windows one, except those in :attr:`side` (Milvus < 2.4: one vector field a collection)."""

    multi: frozenset[str]
    side: dict[str, str] = field(default_factory=dict)  # vector → suffix of its own collection

    def suffix(self, vector: str) -> str:
        """The suffix of the Milvus collection that holds ``vector`` (after the chunk collection's name)."""
        return self.side.get(vector, WINDOWS_SUFFIX if vector in self.multi else "")

    def window_suffixes(self) -> list[str]:
        """The collections holding window rows (``CHUNK:i``)."""
        return [WINDOWS_SUFFIX, *(self.side[k] for k in sorted(self.multi) if k in self.side)]


def _collection_name(name: str) -> str:
    """A ragtune name (letters, digits, ``-``, ``_``, ``.``) as a Milvus one (letters, digits, ``_``).

    ``_`` → ``__``, ``-`` → ``_0``, ``.`` → ``_1``, and ``_x`` before a name that
    does not start with a letter: no two names meet, and no name ends in
    :data:`WINDOWS_SUFFIX` (a lone ``_`` before a letter).

    Example:
        >>> _collection_name("my-docs.rebuild")
        'my_0docs_1rebuild'
    """
    out = name.replace("_", "__").replace("-", "_0").replace(".", "_1")
    return out if out[:1].isalpha() else "_x" + out


def _field(vector_name: str) -> str:
    return vector_name.replace("-", "_")


def _index_params(spec: VectorSpec) -> dict[str, Any]:
    if not spec.index:  # the small prefetch vectors are scanned, as on Qdrant Edge
        return {"index_type": "FLAT", "params": {}}
    graph = {"M": 16, "efConstruction": 200}
    if spec.quantization == "scalar":
        return {"index_type": "HNSW_SQ", "params": {**graph, "sq_type": "SQ8", "refine": True, "refine_type": "FP32"}}
    return {"index_type": "HNSW", "params": graph}


def _vector(v: Any) -> list[float]:
    return np.asarray(v, dtype=np.float32).tolist()


def _literal(value: Any) -> str:
    """A value in Milvus' expression syntax: strings quoted and escaped, numbers, booleans, lists of these."""
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return '"' + escaped.replace("\t", "\\t") + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and math.isfinite(value):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    raise InputError(f"filter value {value!r}: use a string, a number, a boolean or a list of them")


def milvus_filter(flt: Where) -> str:
    """A :class:`Where` as a Milvus boolean expression on the ``payload`` JSON field.

    Matches as Qdrant's filter does: a key ``a.b`` is a nested path; ``eq``
    and ``in`` also match a list that contains the value; a condition on a
    missing key is false, so ``ne`` (a ``must_not`` of ``eq``) keeps points
    without the key. Every condition is guarded by ``exists``, so none is null
    and ``not`` is two-valued. Differences: ``nin`` on a list value matches
    when the list holds none of the values (Qdrant: some value not listed);
    ranges compare plain numbers (Qdrant: any number of a list).

    Example:
        >>> milvus_filter(Where(must=(Condition("source", "eq", "a.md"),)))
        '(((exists payload["source"]) and (payload["source"] == "a.md" or json_contains(payload["source"], "a.md"))))'
    """

    def field(c: Condition) -> str:
        path = "payload" + "".join(f"[{_literal(part)}]" for part in c.key.split("."))
        if c.op == "eq":
            test = f"{path} == {_literal(c.value)} or json_contains({path}, {_literal(c.value)})"
        elif c.op in ("in", "nin"):
            values = list(c.value)
            if not values:
                return FALSE if c.op == "in" else TRUE
            test = " or ".join([*(f"{path} == {_literal(v)}" for v in values), f"json_contains_any({path}, {_literal(values)})"])
            if c.op == "nin":
                test = f"not ({test})"
        else:
            try:
                bound = float(c.value)
            except (TypeError, ValueError):
                raise InputError(f"filter on {c.key!r}: {c.op} needs a number, not {c.value!r}") from None
            test = f"{path} {dict(gt='>', gte='>=', lt='<', lte='<=')[c.op]} {_literal(bound)}"
        # ``(exists p)`` in parentheses: Milvus 2.3's parser reads ``exists p and q`` as ``exists (p and q)``
        return f"((exists {path}) and ({test}))"

    def make(must: list[str] | None, should: list[str] | None, must_not: list[str] | None) -> str:
        parts = list(must or [])
        if should:
            parts.append("(" + " or ".join(should) + ")")
        parts += [f"not {x}" for x in must_not or []]
        return "(" + " and ".join(parts) + ")" if parts else TRUE

    return translate_filter(flt, field, make)
