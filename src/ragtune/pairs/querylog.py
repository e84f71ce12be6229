"""The served-query log: what people asked the retriever, and what they said about the answers.

``ragtune serve --log-queries DIR`` (and the LlamaIndex retriever's
``query_log=DIR``) append one JSON line per search to ``DIR/queries.jsonl``:
``{"type": "search", "id", "time", "query", "mode", "top_k", "results": [{"id",
"score"}], "model", "collection"}``. ``POST /v1/feedback`` appends ``{"type":
"feedback", "id", "time", "query_id", "chosen", "rejected", "rating"}``. Nothing
else is written: no request headers, no keys, no client addresses. The log holds
your users' questions verbatim; keep the folder as private as the data behind it.

Files rotate at ``max_bytes`` (``queries.jsonl.1`` … ``.N``, the oldest dropped
after ``backups``), through the standard library's ``RotatingFileHandler``, which
already does size-capped, thread-safe rotation. :func:`read_query_log` reads a
folder back (every rotated file, oldest first) for
:func:`ragtune.pairs.served.label_served_queries`.

Example::

    from ragtune.pairs.querylog import QueryLog, read_query_log

    log = QueryLog("logs/")
    qid = log.search("night tram interval", "hybrid", 5, [("c1", 0.91)], model="sha256:…")
    log.feedback(qid, chosen=["c1"])
    read_query_log("logs/").searches[qid]["query"]   # 'night tram interval'
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, InputError

__all__ = ["LOG_FILE", "QueryLog", "QueryLogData", "read_query_log"]

LOG_FILE = "queries.jsonl"
#: query ids remembered (with the ids they returned) so feedback can be checked
_REMEMBERED = 100_000


class QueryLog:
    """Appends searches and feedback to ``folder/queries.jsonl``, rotated by size.

    Args:
        folder: where the log lives (created if missing).
        max_bytes: size at which the file rotates.
        backups: rotated files kept (the oldest beyond them is deleted).

    Raises:
        ConfigError: the folder cannot be created or written.
    """

    def __init__(self, folder: str | Path, max_bytes: int = 64 * 2**20, backups: int = 20) -> None:
        if max_bytes < 1024:
            raise ConfigError(f"query log max_bytes={max_bytes}: must be at least 1024")
        self.folder = Path(folder).expanduser()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                self.folder / LOG_FILE, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
        except OSError as exc:
            raise ConfigError(f"--log-queries {self.folder}: cannot write there ({exc.strerror or exc})") from exc
        handler.setFormatter(logging.Formatter("%(message)s"))
        # a private logger (not in logging's registry): nothing propagates to the console
        self._logger = logging.Logger(f"ragtune.querylog.{id(self)}", level=logging.INFO)
        self._logger.propagate = False
        self._logger.addHandler(handler)
        self._handler = handler
        self._recent: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._lock = threading.Lock()

    def search(
        self,
        query: str,
        mode: str,
        top_k: int,
        results: Sequence[tuple[str, float]],
        model: str | None = None,
        collection: str | None = None,
    ) -> str:
        """Log one search; returns its id (for feedback)."""
        qid = uuid.uuid4().hex
        self._write({
            "type": "search", "id": qid, "time": _now(), "query": query, "mode": mode, "top_k": int(top_k),
            "results": [{"id": str(i), "score": round(float(s), 6)} for i, s in results],
            "model": model, "collection": collection,
        })
        with self._lock:
            self._recent[qid] = frozenset(str(i) for i, _ in results)
            while len(self._recent) > _REMEMBERED:
                self._recent.popitem(last=False)
        return qid

    def returned(self, query_id: str) -> frozenset[str] | None:
        """The chunk ids a logged search returned; None for an id this log does not remember."""
        with self._lock:
            return self._recent.get(query_id)

    def feedback(
        self,
        query_id: str,
        chosen: Sequence[str] = (),
        rejected: Sequence[str] = (),
        rating: float | None = None,
    ) -> str:
        """Log what a user said about a search's results; returns the feedback's id."""
        fid = uuid.uuid4().hex
        self._write({
            "type": "feedback", "id": fid, "time": _now(), "query_id": query_id,
            "chosen": [str(c) for c in chosen], "rejected": [str(r) for r in rejected],
            "rating": None if rating is None else float(rating),
        })
        return fid

    def _write(self, record: dict[str, Any]) -> None:
        self._logger.info(json.dumps(record, ensure_ascii=False))

    def close(self) -> None:
        self._handler.close()
        self._logger.removeHandler(self._handler)


@dataclass
class QueryLogData:
    """A log folder read back: searches by id (in order) and feedback records."""

    searches: dict[str, dict[str, Any]] = field(default_factory=dict)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped_lines: int = 0


def read_query_log(folder: str | Path) -> QueryLogData:
    """Every ``queries.jsonl*`` file in ``folder``, oldest first; unreadable lines are counted, not fatal.

    Raises:
        InputError: the folder does not exist or holds no log file.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"--queries {root}: no such folder (point it at a ragtune serve --log-queries folder)")
    files = sorted(root.glob(f"{LOG_FILE}*"), key=_age, reverse=True)
    if not files:
        raise InputError(f"--queries {root}: no {LOG_FILE} in it (write one with ragtune serve --log-queries {root})")
    data = QueryLogData(files=[f.name for f in files])
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    data.skipped_lines += 1  # a line cut by a crash, or not ours
                    continue
                if not isinstance(rec, dict):
                    data.skipped_lines += 1
                elif rec.get("type") == "search" and isinstance(rec.get("query"), str) and rec.get("id"):
                    data.searches[str(rec["id"])] = rec
                elif rec.get("type") == "feedback" and rec.get("query_id"):
                    data.feedback.append(rec)
                else:
                    data.skipped_lines += 1
    return data


def _age(path: Path) -> int:
    """Rotation number: ``queries.jsonl`` is 0 (newest), ``.1`` next, … (sorted reversed: oldest first)."""
    suffix = path.name[len(LOG_FILE):].lstrip(".")
    return int(suffix) if suffix.isdigit() else 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
