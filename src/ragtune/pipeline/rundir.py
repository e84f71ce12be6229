"""The run directory: where every stage's artifact lives, and ``run.json``.

``run.json`` records the configuration, package versions, input hashes and, per
stage, a fingerprint of what the stage was given, a digest of what it wrote
(size and SHA-256 of files; of a model folder, its weights) and its wall time.
A stage whose fingerprint matches and whose output still matches its digest is
skipped on a re-run, so an interrupted ``ragtune run`` resumes where it
stopped; an output that was damaged, edited or deleted since is named in one
line and the stage is redone. A stage redone because its inputs changed says
so, and what it replaced. ``run.json`` is written atomically; a damaged one is
an error naming it, never silently replaced (it is what says which stages,
training included, are done).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# fingerprint lives in _io (the trainer needs it without this module); re-exported here
from ragtune._io import fingerprint as fingerprint
from ragtune._io import sha256_file, write_json
from ragtune.errors import InputError
from ragtune.machine import machine_info, package_versions

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
#: files inside an artifact folder that later stages rewrite (the model card
#: gains the evaluation) and folders they add (``ragtune export``'s forms)
_LATER = {"README.md", "ragtune.json", "RAGTUNE.md"}  # train.card writes these after evaluation
_LATER_DIRS = {"onnx", "openvino"}
#: weights are hashed; the other files of a folder are checked by size
_HASHED = (".safetensors", ".bin", ".pt", ".npy")


def artifact_digest(path: Path) -> dict[str, Any] | None:
    """Size and SHA-256 of a file; of a folder, each file's size and its weights' SHA-256. None when missing."""
    if path.is_file():
        return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if not path.is_dir():
        return None
    files: dict[str, Any] = {}
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if not f.is_file() or rel.parts[0] in _LATER_DIRS or (len(rel.parts) == 1 and f.name in _LATER):
            continue
        files[rel.as_posix()] = [f.stat().st_size, sha256_file(f) if f.suffix in _HASHED else None]
    return {"files": files}


def _difference(recorded: dict[str, Any], now: dict[str, Any] | None) -> str | None:
    """What changed between two digests, in a few words; None when they match."""
    if now is None:
        return "it is missing"
    if "sha256" in recorded:
        if now.get("bytes") != recorded["bytes"]:
            return f"{now.get('bytes')} bytes, {recorded['bytes']} written"
        return None if now.get("sha256") == recorded["sha256"] else "its content changed"
    have, want = now.get("files", {}), recorded.get("files", {})
    for name, (size, digest) in want.items():
        if name not in have:
            return f"{name} is missing"
        if have[name][0] != size:
            return f"{name} has {have[name][0]} bytes, {size} written"
        if digest and have[name][1] != digest:
            return f"{name}'s content changed"
    return None


def read_record(path: Path) -> dict[str, Any]:
    """A run's ``run.json``; a damaged one is an :class:`~ragtune.errors.InputError` naming it and the fix.

    Damaged: not UTF-8, not JSON (cut off), not an object, or ``stages`` (or a
    stage in it, ``config``, ``inputs``) not an object. It is never replaced by
    an empty record, which would silently redo every finished stage.
    """
    why = None
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the run record ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        why = f"not UTF-8: byte {exc.object[exc.start]:#04x} at offset {exc.start}"
    except json.JSONDecodeError as exc:
        why = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    else:
        if not isinstance(record, dict):
            why = f"a JSON {type(record).__name__}, not an object"
        else:
            why = next((f"{key!r} is a {type(record[key]).__name__}, not an object"
                        for key in ("stages", "config", "inputs")
                        if key in record and not isinstance(record[key], dict)), None)
            why = why or next((f"stage {name!r} is a {type(st).__name__}, not an object"
                               for name, st in record.get("stages", {}).items() if not isinstance(st, dict)), None)
    if why:
        raise InputError(f"{path} is damaged ({why}); move it away to start the run over, or restore it")
    return record


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
            self.record = read_record(path)
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
    def served_pairs(self) -> Path:
        return self.root / "served_pairs.jsonl"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def served_model(self) -> Path:
        """The tuned model trained further on served queries (``ragtune run --queries``)."""
        return self.root / "model-served"

    @property
    def served_checkpoints(self) -> Path:
        return self.root / "checkpoints-served"

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

    def stage_done(self, name: str, fp: str, output: Path | Sequence[Path]) -> bool:
        """True when stage ``name`` already ran with fingerprint ``fp`` and its output is still what it wrote.

        ``output``: the stage's artifact, or all of them (a stage that wrote
        several, :meth:`outputs`; an empty list is never done). A missing,
        damaged or edited output (its digest differs) is named in one warning
        and the stage is redone; so is a stage whose inputs changed.
        """
        outputs = [output] if isinstance(output, Path) else list(output)
        st = self.record["stages"].get(name)
        if not (st and st.get("status") == "done" and outputs):
            return False
        missing = next((p for p in outputs if not p.exists()), None)
        if missing is not None:
            log.warning("%s: missing, though the %s stage wrote it; redoing the stage", self.relative(missing), name)
            return False
        if st.get("fingerprint") != fp:
            log.warning("%s: inputs or options of the %s stage changed; redoing it (the new %s replaces it when complete)",
                        self.relative(outputs[0]), name, self.relative(outputs[0]))
            return False
        recorded = st.get("artifacts") or ({self.relative(outputs[0]): st["artifact"]} if st.get("artifact") else {})
        for path in outputs:
            want = recorded.get(self.relative(path))
            why = _difference(want, artifact_digest(path)) if want else None
            if why:
                log.warning("%s: not what the %s stage wrote (%s); redoing the stage", self.relative(path), name, why)
                return False
        return True

    def outputs(self, name: str) -> list[Path]:
        """The artifacts a stage that wrote several recorded (``stage(..., output=[...])``); empty when none."""
        st = self.record["stages"].get(name) or {}
        return [self.root / rel for rel in st.get("artifacts") or {}]

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory, for messages."""
        try:
            return Path(path).relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(path)

    @contextmanager
    def stage(self, name: str, fp: str, output: Path | list[Path] | None = None) -> Iterator[dict[str, Any]]:
        """Time a stage and record it; the yielded dict collects the stage's own facts.

        With ``output``, the digest of what the stage wrote there is recorded,
        so a later run can tell that it is still intact. A list is read when
        the stage ends, so a stage that learns its files as it goes (exports)
        appends them to it; each gets its digest (:meth:`outputs` names them).
        """
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
        if isinstance(output, list):
            st["artifacts"] = {self.relative(p): artifact_digest(p) for p in output}
        elif output is not None:
            st["artifact"] = artifact_digest(output)
        st.update(status="done", seconds=round(time.perf_counter() - t0, 3), finished=_now())
        self.save()

    def record_artifact(self, name: str, output: Path) -> None:
        """Record the digest of what finished stage ``name`` wrote after its timed part (the report)."""
        self.record["stages"][name]["artifact"] = artifact_digest(output)
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
