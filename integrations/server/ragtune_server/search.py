"""The Qdrant side of /v1/search: one collection, opened once, checked against the model.

The embedded on-disk store takes a file lock, so the client is opened once for
the life of the app and closed at shutdown (or released and reopened on
request: ``POST /v1/release`` / ``/v1/reload``). Qdrant calls are blocking and
run on their own threads; the embedded store is one in-process object, so its
calls run one at a time, while a Qdrant server gets several in parallel.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from ragtune.errors import InputError, RagtuneError
from ragtune.index.chunk_index import ChunkIndex, Hit, is_remote, open_index
from ragtune.index.filters import Where, where
from ragtune.index.fusion import HybridConfig

log = logging.getLogger("ragtune_server")

FilterValue = str | int | bool | list[str] | list[int]


class SearchClosedError(RuntimeError):
    """The collection was released or is being reopened; the client should retry."""


class SearchBackend:
    """A :class:`ChunkIndex` built by the served model, with its client and threads."""

    def __init__(self, index: ChunkIndex, location: str) -> None:
        self.index = index
        self.location = location
        self.collection = index.collection
        self.closed = False
        workers = 8 if is_remote(location) else 1
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ragtune-qdrant"
        )

    @classmethod
    def open(
        cls, location: str, collection: str, model: Any, model_name: str, api_key: str | None = None
    ) -> SearchBackend:
        """Open ``collection`` at ``location``; refuse a missing one, one built by another model,
        or one that cannot be read (an embedded folder another process holds, or unreadable).

        Unlike ``ragtune index``, the server never creates a collection: a typo in
        ``--collection`` or ``--store`` must fail at start-up, not serve an empty index.
        The collection is counted once here, since stores open lazily (an embedded
        folder's lock is taken on first use): a store that cannot answer fails now,
        with its one-line reason, instead of being served "degraded".
        """
        index = open_index(location, collection, model, model_name, api_key=api_key, create=False)
        try:
            index.count(False)
        except RagtuneError:
            index.close()
            raise
        except Exception as exc:
            index.close()
            detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise InputError(f"{location}: collection {collection!r} cannot be read ({detail})") from exc
        log.info("search: collection %r at %s", collection, location)
        return cls(index, str(location))

    async def search(
        self,
        vector: np.ndarray | None,
        top_k: int,
        mode: str,
        query_filter: Any = None,
        two_stage: bool = False,
        query_text: str | None = None,
        hybrid: HybridConfig | None = None,
    ) -> list[Hit]:
        return await self._in_thread(
            self.index.search, vector, top_k, mode, query_filter, two_stage, None, query_text, hybrid
        )

    async def count(self) -> int:
        """Points in the collection: exact in the embedded store, Qdrant's estimate on a server
        (an exact count of a large remote collection is too slow for a health probe)."""
        return await self._in_thread(self.index.count, not is_remote(self.location))

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:  # the executor's "cannot schedule new futures after shutdown"
            if self.closed:
                raise SearchClosedError(f"collection {self.collection!r} was closed") from exc
            raise

    def close(self) -> None:
        """Release the threads and the client (and with it the embedded store's file lock);
        searches already submitted finish first."""
        self.closed = True
        self._executor.shutdown(wait=True)
        try:
            self.index.close()
        except Exception:  # closing must not mask the reason for shutting down
            log.warning("closing the Qdrant client failed", exc_info=True)


def build_filter(spec: Mapping[str, FilterValue] | None) -> Where | None:
    """``{"key": value}`` → a filter that all conditions must match (:func:`ragtune.index.filters.where`).

    A scalar is an exact match; a list matches any of its values. Keys are
    payload keys (``source``, ``doc_id``, ``file_name``, ...); Qdrant's dotted
    paths (``a.b``) work as in Qdrant.
    """
    return where(spec)


def client_error(exc: BaseException) -> str | None:
    """What the store said when it refused a search for the request's reasons (a Qdrant
    server's 400/422, e.g. a filter on a key its strict mode does not index), else None."""
    status = getattr(exc, "status_code", None)
    if type(exc).__name__ != "UnexpectedResponse" or status not in (400, 422):
        return None
    try:
        detail = json.loads(exc.content)["status"]["error"]  # type: ignore[attr-defined]
    except (ValueError, KeyError, TypeError):
        detail = f"HTTP {status}"
    return f"Qdrant refused the search: {str(detail)[:300]}"


def public_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` without absolute paths of the server's disk, for a response.

    Any string that is an absolute path (POSIX, Windows, ``~/``, ``file://``), at any
    depth, becomes the path relative to the indexed corpus root when the point's
    ``source`` (the file's path relative to that root) ends it, else the file name.
    """
    source = meta.get("source")
    relative = isinstance(source, str) and source and not _absolute(source)
    rel = PurePosixPath(source) if relative else None

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            path = _absolute(value)
            if path is None:
                return value
            if rel is not None and path.parts[-len(rel.parts) :] == rel.parts:
                return rel.as_posix()
            return path.name
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return {k: clean(v) for k, v in meta.items()}


def _absolute(value: str) -> PurePosixPath | PureWindowsPath | None:
    """``value`` as a path when it is an absolute one, else None."""
    if value[:5].lower() == "file:":
        value = unquote(urlsplit(value).path) or "/"
    if value.startswith(("/", "~/", "~\\")):
        return PurePosixPath(value.replace("\\", "/"))
    windows = PureWindowsPath(value)
    return windows if windows.drive and windows.root else None
