"""Trainer callbacks: training steps on ragtune's progress display, Trainer logs into logging.

transformers' Trainer reports through a tqdm bar and prints its log dicts
(``{'loss': ...}``) to stdout. ragtune turns both off (``disable_tqdm`` and no
``PrinterCallback``) and reports instead through :mod:`ragtune.progress` (one
line with steps and ETA) and the ``ragtune.train`` logger (the run's log file).
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

from ragtune import progress

log = logging.getLogger("ragtune.train")


class ProgressCallback(TrainerCallback):
    """Training steps as a :func:`ragtune.progress.task`; Trainer logs to the ``ragtune.train`` logger."""

    def __init__(self, description: str = "Training steps") -> None:
        self.description = description
        self._cm: Any = None
        self._task: progress.Task | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._cm = progress.task(self.description, total=int(state.max_steps) or None, unit="steps")
        self._task = self._cm.__enter__()
        if state.global_step:  # resumed from a checkpoint
            self._task.advance(int(state.global_step))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._task is not None:
            self._task.advance(int(state.global_step) - self._task.completed)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs:
            log.info("step %d: %s", state.global_step, logs)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = self._task = None
