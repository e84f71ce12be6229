"""The run directory: where every stage's artifact lives, and ``run.json``.

``run.json`` records the configuration, package versions, input hashes and, per
stage, a fingerprint of what the stage was given plus its wall time. A stage
whose fingerprint matches and whose output exists is skipped on a re-run, so an
interrupted ``ragtune run`` resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# fingerprint lives in _io (the trainer needs it without this module); re-exported here
from ragtune._io import fingerprint as fingerprint
from ragtune._io import write_json
from ragtune.machine import machine_info, package_versions

RUN_FILE = "run.json"
@dataclass
class RunDir:
    """Paths of a run's artifacts and the bookkeeping in ``run.json``."""

    root: Path
    record: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / RUN_FILE
        if path.exists():
            try:
                self.record = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                self.record = {}
        self.record.setdefault("created", _now())
        self.record.setdefault("stages", {})

    # artifact paths -------------------------------------------------------
    @property
    def chunks(self) -> Path:
        return self.root / "chunks.jsonl"

    @property
    def pairs(self) -> Path:
        return self.root / "pairs.jsonl"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def qdrant(self) -> Path:
        return self.root / "qdrant"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    # bookkeeping ----------------------------------------------------------
    def set_config(self, config: dict[str, Any], inputs: dict[str, str]) -> None:
        """Store the run's configuration, input hashes, versions and machine."""
        self.record["config"] = config
        self.record["inputs"] = inputs
        self.record["versions"] = package_versions()
        self.record["machine"] = machine_info()
        self.save()

    def stage_done(self, name: str, fp: str, output: Path) -> bool:
        """True when stage ``name`` already ran with fingerprint ``fp`` and its output exists."""
        st = self.record["stages"].get(name)
        return bool(st and st.get("fingerprint") == fp and st.get("status") == "done" and output.exists())

    @contextmanager
    def stage(self, name: str, fp: str) -> Iterator[dict[str, Any]]:
        """Time a stage and record it; the yielded dict collects the stage's own facts."""
        info: dict[str, Any] = {}
        self.record["stages"][name] = {"fingerprint": fp, "status": "running", "started": _now()}
        self.save()
        t0 = time.perf_counter()
        try:
            yield info
        except BaseException:
            self.record["stages"][name]["status"] = "failed"
            self.record["stages"][name]["seconds"] = round(time.perf_counter() - t0, 3)
            self.save()
            raise
        st = self.record["stages"][name]
        st.update(info)
        st.update(status="done", seconds=round(time.perf_counter() - t0, 3), finished=_now())
        self.save()

    def timings(self) -> dict[str, float]:
        """Seconds per finished stage, as ``{stage}_s``."""
        return {
            f"{k}_s": v["seconds"]
            for k, v in self.record["stages"].items()
            if v.get("status") == "done" and "seconds" in v
        }

    def save(self) -> None:
        write_json(self.root / RUN_FILE, self.record)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
