"""What a person sees on the console: ragtune's progress lines and its own messages, nothing else.

Third-party libraries print progress bars (tqdm in transformers, datasets,
huggingface_hub), Trainer log dicts and info logs. :func:`setup` silences all
of them on the console unless ``verbose``; :func:`log_to` sends every log
record (ragtune's and theirs, with Python warnings) to a file in the run
directory, so nothing is lost. :func:`display` picks the progress display:
live rich lines on a terminal, plain throttled lines with a heartbeat in a log
or CI, none with ``quiet``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path

from ragtune import progress

#: libraries that keep their own handlers (and tqdm bars) unless told otherwise
_HF_LIBRARIES = ("transformers", "datasets", "huggingface_hub")
_FILE_HANDLER_NAME = "ragtune-run-log"


class _OwnRecords(logging.Filter):
    """On the console: ragtune's records, and anyone's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("ragtune") or record.levelno >= logging.ERROR


def setup(quiet: bool = False, verbose: bool = False) -> None:
    """Console logging and third-party silence; call once, before the heavy imports run."""
    # tqdm reads TQDM_* environment variables as its defaults (tqdm >= 4.66): every
    # bar a library opens is disabled unless the user asked for everything
    if not verbose:
        os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() != _FILE_HANDLER_NAME:
            root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s"))
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        console.addFilter(_OwnRecords())
    root.addHandler(console)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    for name in _HF_LIBRARIES:
        _route_through_root(name)


def _route_through_root(library: str) -> None:
    """Make a Hugging Face library log through the root logger (no own handler, no bars)."""
    try:
        module = importlib.import_module(f"{library}.utils.logging")
    except ImportError:
        return
    for fn in ("disable_default_handler", "enable_propagation", "disable_progress_bar"):
        if hasattr(module, fn):
            getattr(module, fn)()


def log_to(folder: str | Path) -> Path:
    """Send every log record at INFO and above (and warnings) to ``folder/ragtune.log``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ragtune.log"
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _FILE_HANDLER_NAME:
            root.removeHandler(h)
            h.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.set_name(_FILE_HANDLER_NAME)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def is_main_process() -> bool:
    """False on every rank but 0 of a data-parallel run (``torchrun`` / ``accelerate launch`` set ``RANK``)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def display(quiet: bool = False) -> progress.Display | None:
    """The progress display for this console: rich on a terminal, lines otherwise, none when quiet."""
    if quiet or not is_main_process():  # under torchrun, rank 0 alone reports
        return None
    if sys.stderr.isatty():
        return progress.RichDisplay()
    interval = float(os.environ.get("RAGTUNE_PROGRESS_INTERVAL", "5"))
    return progress.LineDisplay(sys.stderr, interval=interval)
