"""Micro-batching: texts from concurrent requests share one model call.

A transformer forward pass over 32 short texts costs little more than over
one, so under load the server encodes whatever has queued up in one call.
Requests queue on the event loop; one collector task takes the oldest, keeps
taking more until ``max_batch_size`` texts or until the oldest has waited
``max_wait_ms``, then runs the model on a single worker thread (model calls
are serialised: torch already spreads one call over the cores, and a GPU runs
one at a time anyway) and resolves each request's future with its slice.

While a batch is encoding the next one fills, so the batch size follows load
by itself: one client pays at most ``max_wait_ms`` extra, 32 clients share
calls. The event loop never runs the model, so health checks and new requests
are answered while it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from ragtune.errors import ConfigError

log = logging.getLogger("ragtune_server")


@dataclass(frozen=True)
class BatchConfig:
    """How long and how much to gather before a model call."""

    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    #: texts waiting beyond this many get 503 (retry) instead of unbounded latency and memory
    max_queue_texts: int = 8192

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size={self.max_batch_size}: must be at least 1")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ConfigError(f"max_wait_ms={self.max_wait_ms}: must be between 0 and 1000")
        if self.max_queue_texts < 1:
            raise ConfigError(f"max_queue_texts={self.max_queue_texts}: must be at least 1")


@dataclass
class Encoded:
    """Vectors (``(n, dim)`` float32, normalised) and token counts of ``n`` texts."""

    vectors: np.ndarray
    tokens: list[int]


EncodeFn = Callable[[list[str], str], Encoded]


class QueueFullError(RuntimeError):
    """Too many texts are waiting; the client should retry shortly."""


class BatcherClosedError(RuntimeError):
    """The server is shutting down."""


@dataclass
class BatchStats:
    """Counters for /health: ``model_calls < requests`` means batching merged requests."""

    requests: int = 0
    texts: int = 0
    model_calls: int = 0
    largest_batch: int = 0
    failed_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Job:
    texts: list[str]
    kind: str
    future: asyncio.Future[Encoded]
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Merge concurrent :meth:`submit` calls into few calls of ``encode(texts, kind)``.

    ``kind`` (``"query"`` or ``"document"``) selects the encoder; jobs of
    different kinds in one gathering run as one call per kind. Create and use
    it on one event loop; :meth:`start` before the first submit,
    :meth:`aclose` at shutdown.
    """

    def __init__(
        self, encode: EncodeFn, config: BatchConfig | None = None, executor: Executor | None = None
    ) -> None:
        self._encode = encode
        self.config = config or BatchConfig()
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="ragtune-encode"
        )
        self._own_executor = executor is None
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._carry: _Job | None = None
        self._inflight: list[_Job] = []
        self._pending_texts = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        """Start the collector task on the running loop."""
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="ragtune-batcher")

    async def submit(self, texts: Sequence[str], kind: str) -> Encoded:
        """Encode ``texts``, in one model call with whatever else is queued.

        Raises what the model raised, :class:`QueueFullError` when too much waits,
        :class:`BatcherClosedError` after :meth:`aclose`.
        """
        if self._closed or self._queue is None:
            raise BatcherClosedError(
                "the server is shutting down" if self._closed else "the batcher is not started"
            )
        batch = list(texts)
        if self._pending_texts and self._pending_texts + len(batch) > self.config.max_queue_texts:
            raise QueueFullError(f"{self._pending_texts} texts are waiting to be encoded")
        job = _Job(batch, kind, asyncio.get_running_loop().create_future())
        self.stats.requests += 1
        self.stats.texts += len(batch)
        self._pending_texts += len(batch)
        self._queue.put_nowait(job)
        return await job.future

    async def aclose(self) -> None:
        """Stop collecting, fail whatever still waits, release the worker thread."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        waiting = list(self._inflight) + ([self._carry] if self._carry else [])
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(BatcherClosedError("the server is shutting down"))
        if self._own_executor:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    # collector ------------------------------------------------------------
    async def _collect(self) -> None:
        while True:
            batch = await self._gather()
            self._inflight = batch
            self._pending_texts -= sum(len(j.texts) for j in batch)
            try:
                await self._run(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not leave requests hanging
                log.exception("batcher failed")
                self._fail(batch, exc)
            finally:
                self._inflight = []

    async def _gather(self) -> list[_Job]:
        assert self._queue is not None
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, size = [first], len(first.texts)
        # the window counts from when the oldest request arrived: one that already
        # waited out a busy model does not wait again
        deadline = first.enqueued + self.config.max_wait_ms / 1000
        while size < self.config.max_batch_size:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if size + len(job.texts) > self.config.max_batch_size:
                self._carry = job  # starts the next batch; a request is never split
                break
            batch.append(job)
            size += len(job.texts)
        return batch

    async def _run(self, batch: list[_Job]) -> None:
        live = [j for j in batch if not j.future.done()]  # drop requests whose client went away
        by_kind: dict[str, list[_Job]] = {}
        for job in live:
            by_kind.setdefault(job.kind, []).append(job)
        for kind, jobs in by_kind.items():
            try:
                result = await self._call(jobs, kind)
            except Exception as exc:  # noqa: BLE001 - the model's error goes to the requests
                if len(jobs) == 1:
                    self._fail(jobs, exc)
                    continue
                # one bad text must not fail the requests it was merged with
                for job in jobs:
                    try:
                        self._resolve([job], await self._call([job], kind))
                    except Exception as one:  # noqa: BLE001 - as above, per request
                        self._fail([job], one)
                continue
            self._resolve(jobs, result)

    async def _call(self, jobs: list[_Job], kind: str) -> Encoded:
        texts = [t for j in jobs for t in j.texts]
        loop = asyncio.get_running_loop()
        self.stats.model_calls += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(texts))
        try:
            result = await loop.run_in_executor(self._executor, self._encode, texts, kind)
        except Exception:
            self.stats.failed_calls += 1
            raise
        if len(result.vectors) != len(texts) or len(result.tokens) != len(texts):
            raise RuntimeError(
                f"encoder returned {len(result.vectors)} vectors for {len(texts)} texts"
            )
        return result

    @staticmethod
    def _resolve(jobs: list[_Job], result: Encoded) -> None:
        offset = 0
        for job in jobs:
            n = len(job.texts)
            if not job.future.done():
                job.future.set_result(
                    Encoded(result.vectors[offset : offset + n], result.tokens[offset : offset + n])
                )
            offset += n

    @staticmethod
    def _fail(jobs: list[_Job], exc: BaseException) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)
