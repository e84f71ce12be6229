"""The Qdrant side of /v1/search: one collection, opened once, checked against the model.

The embedded on-disk store takes a file lock, so the client is opened once for
the life of the app and closed at shutdown. Qdrant calls are blocking and run
on their own threads; the embedded store is one in-process object, so its
calls run one at a time, while a Qdrant server gets several in parallel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ragtune.index import ChunkIndex, Hit, is_remote, open_index
from ragtune.stores import Where, where

log = logging.getLogger("ragtune_server")

FilterValue = str | int | bool | list[str] | list[int]


class SearchBackend:
    """A :class:`ChunkIndex` built by the served model, with its client and threads."""

    def __init__(self, index: ChunkIndex, location: str) -> None:
        self.index = index
        self.location = location
        self.collection = index.collection
        workers = 8 if is_remote(location) else 1
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="ragtune-qdrant"
        )

    @classmethod
    def open(
        cls, location: str, collection: str, model: Any, model_name: str, api_key: str | None = None
    ) -> SearchBackend:
        """Open ``collection`` at ``location``; refuse a missing one or one built by another model.

        Unlike ``ragtune index``, the server never creates a collection: a typo in
        ``--collection`` or ``--qdrant`` must fail at start-up, not serve an empty index.
        """
        index = open_index(location, collection, model, model_name, api_key=api_key, create=False)
        log.info("search: collection %r at %s", collection, location)
        return cls(index, str(location))

    async def search(
        self, vector: np.ndarray, top_k: int, mode: str, query_filter: Any = None, two_stage: bool = False
    ) -> list[Hit]:
        return await self._in_thread(self.index.search, vector, top_k, mode, query_filter, two_stage)

    async def count(self) -> int:
        """Points in the collection: exact in the embedded store, Qdrant's estimate on a server
        (an exact count of a large remote collection is too slow for a health probe)."""
        return await self._in_thread(self.index.count, not is_remote(self.location))

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        """Release the threads and the client (and with it the embedded store's file lock)."""
        self._executor.shutdown(wait=True)
        try:
            self.index.close()
        except Exception:  # closing must not mask the reason for shutting down
            log.warning("closing the Qdrant client failed", exc_info=True)


def build_filter(spec: Mapping[str, FilterValue] | None) -> Where | None:
    """``{"key": value}`` → a filter that all conditions must match (:func:`ragtune.stores.where`).

    A scalar is an exact match; a list matches any of its values. Keys are
    payload keys (``source``, ``doc_id``, ``file_name``, ...); Qdrant's dotted
    paths (``a.b``) work as in Qdrant.
    """
    return where(spec)
