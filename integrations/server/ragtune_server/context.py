"""What one app serves: the model, its batcher, the optional search backend, the limits.

Built by :func:`ragtune_server.create_app` (which loads the model, so a bad
model fails before a port is bound) and started/stopped by the app's
lifespan: the batcher needs the running event loop, and the Qdrant client
holds the embedded store's file lock, so both live exactly as long as the app
(or until ``POST /v1/release``; ``POST /v1/reload`` opens the collection again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from ragtune.index.chunk_index import is_remote
from ragtune.index.fusion import HybridConfig
from ragtune.pairs.querylog import QueryLog
from ragtune_server.batching import BatchConfig, MicroBatcher
from ragtune_server.encoding import ModelWorker
from ragtune_server.limits import Limits
from ragtune_server.search import SearchBackend

log = logging.getLogger("ragtune_server")


@dataclass
class ServerContext:
    worker: ModelWorker
    model_name: str
    limits: Limits = field(default_factory=Limits)
    batching: BatchConfig = field(default_factory=BatchConfig)
    qdrant: str | None = None
    collection: str | None = None
    qdrant_api_key: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    search: SearchBackend | None = None
    #: hybrid search's fusion, fitted for the served model (its folder's ragtune_hybrid.json)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    #: whether the server has an API key: without one, the admin routes are off
    keyed: bool = False
    batcher: MicroBatcher | None = None
    query_log: QueryLog | None = None
    model_fingerprint: str | None = None
    _reopening: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def search_configured(self) -> bool:
        return self.qdrant is not None

    def open_search(self) -> SearchBackend | None:
        """Open the collection once (idempotent); raises ``RagtuneError`` naming the fix."""
        if self.qdrant is None or self.search is not None:
            return self.search
        self.search = self._open_backend()
        return self.search

    async def reload(self) -> SearchBackend:
        """Open the collection again, so the server sees what was written to it meanwhile.

        An embedded folder is closed first (a process holds one open copy of a
        collection, and reading the changes needs a fresh open); searches in
        flight finish, searches meanwhile get 503. A Qdrant server's collection is
        reopened before the old client closes, so searches never pause, and stays
        when the new one cannot be opened. A collection is served only once it has
        answered (:meth:`SearchBackend.open`), never an unusable one.
        Raises ``RagtuneError`` (the collection is gone, locked, or of another model).
        """
        async with self._reopening:
            old = self.search
            if old is not None and not is_remote(old.location):
                await self._release()
                old = None
            opened = await asyncio.to_thread(self._open_backend)
            self.search = opened
            if old is not None:
                await asyncio.to_thread(old.close)
            return opened

    async def release(self) -> None:
        """Close the collection (an embedded folder's lock too) until :meth:`reload`."""
        async with self._reopening:
            await self._release()

    async def _release(self) -> None:
        old, self.search = self.search, None
        if old is not None:
            await asyncio.to_thread(old.close)

    def _open_backend(self) -> SearchBackend:
        assert self.qdrant is not None
        return SearchBackend.open(
            self.qdrant,
            self.collection or "ragtune",
            self.worker.model,
            self.model_name,
            self.qdrant_api_key,
        )

    async def start(self) -> None:
        self.open_search()
        self.batcher = MicroBatcher(self.worker, self.batching)
        self.batcher.start()
        log.info("serving %s (dim %d)", self.model_name, self.worker.dimension)

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()
            self.batcher = None
        self.close_search()
        if self.query_log is not None:
            self.query_log.close()

    def close_search(self) -> None:
        if self.search is not None:
            self.search.close()
            self.search = None
