"""What the CLI shows: the progress display of a command's long work, result lines, the retrieval summary.

``--quiet`` (set once by the app's callback) turns the progress display off;
results are always printed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from ragtune import console, progress

_quiet = False


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no progress display (the app's callback calls this before any command)."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


@contextlib.contextmanager
def showing_progress() -> Iterator[None]:
    """ragtune's one progress display for the command's long work (none with --quiet)."""
    with progress.use(console.display(_quiet)):
        yield


def echo(msg: str) -> None:
    typer.echo(msg)


def print_summary(report: dict[str, Any], workdir: Path | None) -> None:
    """The verdict and the headline metrics of a retrieval report (and where the HTML is)."""
    from ragtune.report.markdown import verdict

    echo("")
    echo(verdict(report))
    for label, by_dim in (report.get("metrics") or {}).items():
        for dim in sorted(by_dim, key=int, reverse=True):
            m = by_dim[dim]
            cells = "  ".join(f"{k} {m[k]:.3f}" for k in ("hit@5", "mrr@10", "ndcg@10") if k in m)
            echo(f"  {label:<11} dim {dim:>4}  {cells}")
    if workdir is not None:
        echo(f"report: {Path(workdir) / 'report' / 'report.html'}")
