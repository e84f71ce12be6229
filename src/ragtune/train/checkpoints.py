"""Training checkpoints: resume a re-run of the same data and config, clear those of another."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from ragtune._io import write_json

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "ragtune_fingerprint.json"


def prepare_checkpoints(ckpt_dir: Path, fp: str, get_last_checkpoint: Any) -> str | None:
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
    last = get_last_checkpoint(str(ckpt_dir))
    if last:
        log.info("resuming training from %s", last)
    return last


def best_step(checkpoint: str | None) -> int | None:
    """The step of a ``checkpoint-<step>`` folder (the best one, under early stopping)."""
    try:
        return int(str(checkpoint).rsplit("-", 1)[-1]) if checkpoint else None
    except ValueError:
        return None
