"""Training checkpoints: resume a re-run of the same data and config, clear those of another.

The trainer writes a checkpoint's files one by one into ``checkpoint-<step>/``
and ``trainer_state.json`` last, so a folder whose state file is missing or
does not parse was cut off mid-write (a kill, a full disk): it is removed and
the newest complete checkpoint before it is resumed from.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ragtune._io import write_json

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "ragtune_fingerprint.json"


STATE_FILE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME, written last


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a checkpoint the trainer finished writing."""
    try:
        json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(ckpt_dir: str | Path) -> str | None:
    """The newest complete ``checkpoint-<step>`` folder; incomplete ones are removed (with a warning)."""
    found = sorted(
        ((best_step(p.name), p) for p in Path(ckpt_dir).glob("checkpoint-*") if p.is_dir()),
        key=lambda sp: sp[0] if sp[0] is not None else -1,
        reverse=True,
    )
    for step, path in found:
        if step is None:
            continue
        if is_complete(path):
            return str(path)
        log.warning("%s: incomplete checkpoint (no readable %s; cut off mid-write), removed", path, STATE_FILE)
        shutil.rmtree(path, ignore_errors=True)
    return None


def prepare_checkpoints(ckpt_dir: Path, fp: str) -> str | None:
    """Return the checkpoint to resume from, clearing checkpoints of other data/config."""
    marker = ckpt_dir / FINGERPRINT_FILE
    if ckpt_dir.exists():
        try:
            same = json.loads(marker.read_text())["fingerprint"] == fp
        except (OSError, ValueError, KeyError):
            same = False
        if not same:
            shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"fingerprint": fp})
    last = last_complete_checkpoint(ckpt_dir)
    if last:
        log.info("resuming training from %s", last)
    return last


def best_step(checkpoint: str | None) -> int | None:
    """The step of a ``checkpoint-<step>`` folder (the best one, under early stopping)."""
    try:
        return int(str(checkpoint).rsplit("-", 1)[-1]) if checkpoint else None
    except ValueError:
        return None
