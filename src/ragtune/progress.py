"""One progress display for every long stage.

Library code reports its work with :func:`track` (wrap an iterable) or
:func:`task` (a context manager whose :class:`Task` is advanced by hand); it
never prints. What a person sees is the display the caller installed with
:func:`use`: the CLI installs :class:`RichDisplay` on a terminal (one live
line per stage with counts, elapsed time and ETA) and :class:`LineDisplay`
when the output is a log or a CI console (a plain line per update, at most
one every few seconds, and a heartbeat so no stage is ever silent). With no
display installed (library use, tests) reporting costs next to nothing.

Example:
    >>> from ragtune import progress
    >>> with progress.use(progress.LineDisplay()):  # doctest: +SKIP
    ...     for batch in progress.track(batches, "Indexing chunks"):
    ...         upsert(batch)
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

_lock = threading.RLock()
_display: Display | None = None


class Task:
    """One unit of reported work: a description, a count done and (when known) a total."""

    def __init__(self, description: str, total: int | None, unit: str, transient: bool, display: Display | None):
        self.description = description
        self.total = total
        self.unit = unit
        self.transient = transient
        self.completed = 0
        self.started = time.monotonic()
        self.finished: float | None = None
        self._display = display
        self.handle: Any = None  # the display's own id for this task

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done."""
        self.completed += n
        if self._display is not None:
            self._display.on_update(self)

    def update(self, total: int | None = None, description: str | None = None) -> None:
        """Change the total (when it becomes known) or the description."""
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        if self._display is not None:
            self._display.on_update(self)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def eta(self) -> float | None:
        """Seconds left at the average rate so far; None before the first item or without a total."""
        if not self.total or not self.completed or self.completed >= self.total:
            return None
        return self.elapsed / self.completed * (self.total - self.completed)

    def status(self) -> str:
        """``description: 12/40 steps (30%), 8s, ETA 19s`` — what a line display prints."""
        parts = []
        if self.total:
            parts.append(f"{self.completed}/{self.total} {self.unit}".rstrip() + f" ({100 * self.completed // self.total}%)")
        elif self.completed:
            parts.append(f"{self.completed} {self.unit}".rstrip())
        parts.append(_secs(self.elapsed))
        eta = self.eta()
        parts.append("done" if self.finished is not None else (f"ETA {_secs(eta)}" if eta is not None else "working"))
        return f"{self.description}: {', '.join(parts)}"


class Display:
    """What a display does when a task starts, advances and finishes (all no-ops here)."""

    def on_start(self, task: Task) -> None:
        pass

    def on_update(self, task: Task) -> None:
        pass

    def on_finish(self, task: Task) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def use(display: Display | None) -> Iterator[Display | None]:
    """Install ``display`` for the duration of the block (None: report to nobody)."""
    global _display
    with _lock:
        previous, _display = _display, display
    try:
        yield display
    finally:
        with _lock:
            _display = previous
        if display is not None:
            display.close()


def current() -> Display | None:
    """The installed display, if any."""
    return _display


@contextlib.contextmanager
def task(description: str, total: int | None = None, unit: str = "", transient: bool = False) -> Iterator[Task]:
    """Report one piece of work; advance the yielded :class:`Task` as it goes.

    Args:
        description: what a person reads, e.g. ``"Training"``.
        total: how many items there will be (None: unknown; a spinner and a count).
        unit: the items' name, e.g. ``"steps"``.
        transient: a helper step inside a stage (encoding a batch of texts);
            displays may drop its line when it finishes.
    """
    display = _display
    t = Task(description, total, unit, transient, display)
    if display is not None:
        display.on_start(t)
    try:
        yield t
    finally:
        t.finished = time.monotonic()
        if display is not None:
            display.on_finish(t)


def track(
    items: Iterable[T], description: str, total: int | None = None, unit: str = "", transient: bool = False
) -> Iterator[T]:
    """Iterate over ``items``, reporting each one as done (total from ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with task(description, total, unit, transient) as t:
        for item in items:
            yield item
            t.advance()


class RichDisplay(Display):
    """Live rich progress lines on a terminal: description, bar, count, elapsed, ETA."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
        )
        self._started = False

    def on_start(self, task: Task) -> None:
        with _lock:
            if not self._started:
                self.progress.start()
                self._started = True
            task.handle = self.progress.add_task(task.description, total=task.total, unit=task.unit)

    def on_update(self, task: Task) -> None:
        self.progress.update(task.handle, completed=task.completed, total=task.total, description=task.description)

    def on_finish(self, task: Task) -> None:
        with _lock:
            if task.transient:
                self.progress.remove_task(task.handle)
            else:
                total = task.total if task.total else task.completed
                self.progress.update(task.handle, completed=task.completed, total=total)

    def close(self) -> None:
        with _lock:
            if self._started:
                self.progress.stop()
                self._started = False


class LineDisplay(Display):
    """One plain line per update for logs and CI: at most one line per task every
    ``interval`` seconds, a line when a task starts and ends, and a heartbeat that
    repeats the innermost running task's status when ``interval`` passes quietly."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._open: list[Task] = []
        self._last_line = time.monotonic()
        self._last_by_task: dict[int, float] = {}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _write(self, text: str) -> None:
        with _lock:
            self.stream.write(text + "\n")
            self.stream.flush()
            now = time.monotonic()
            self._last_line = now

    def on_start(self, task: Task) -> None:
        # the start line first: the heartbeat may repeat this task's status only after it
        if not task.transient:
            total = f" ({task.total} {task.unit})".replace(" )", ")") if task.total else ""
            self._write(f"{task.description}{total} ...")
        with _lock:
            self._open.append(task)
            self._last_by_task[id(task)] = time.monotonic()
            # interval 0 prints every update, so there is no quiet time for a heartbeat to fill
            if self._beat is None and self.interval > 0:
                self._beat = threading.Thread(target=self._heartbeat, name="ragtune-progress", daemon=True)
                self._beat.start()

    def on_update(self, task: Task) -> None:
        now = time.monotonic()
        if now - self._last_by_task.get(id(task), 0.0) >= self.interval:
            self._last_by_task[id(task)] = now
            self._write(task.status())

    def on_finish(self, task: Task) -> None:
        with _lock:
            if task in self._open:
                self._open.remove(task)
            self._last_by_task.pop(id(task), None)
        if not task.transient:
            self._write(task.status())

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 2)):
            with _lock:
                running = self._open[-1] if self._open else None
                quiet = time.monotonic() - self._last_line >= self.interval
            if running is not None and quiet:
                self._write(running.status())

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=2)
            self._beat = None


def _secs(s: float) -> str:
    s = max(0, round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
