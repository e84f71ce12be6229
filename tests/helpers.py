"""Helpers the test modules share (fixtures live in conftest.py): paths, the tiny corpus's facts,
a real PDF writer, the CLI run as a person runs it, and a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared" / "data"
SAMPLE_CORPUS = ROOT / "examples" / "sample_corpus"

# Facts that appear in exactly one document of the tiny corpus (query → file).
FACTS = {
    "How often does the Harbor Line tram run at night?": "timetable.md",
    "What does a monthly Harbor Line pass cost?": "fares.txt",
    "Which depot maintains the tram fleet?": "depot.html",
    "Can bicycles be taken on board the trams?": "faq.jsonl",
    "What happened at the 1998 opening ceremony?": "history.pdf",
}


def shared_data(*parts: str) -> Path:
    """A path under ``../shared/data``; skips the test cleanly when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (shared benchmark data lives beside the repo)")
    return path


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A real PDF with extractable text, written by matplotlib (TrueType fonts)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["pdf.fonttype"] = 42
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as pdf:
        for page in pages:
            fig = plt.figure(figsize=(8.5, 11))
            fig.text(0.08, 0.95, page, va="top", fontsize=9, wrap=True)
            pdf.savefig(fig)
            plt.close(fig)
    return path


def cli(*args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the installed console script (as a user would), offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    exe = os.path.join(os.path.dirname(sys.executable), "ragtune")
    proc = subprocess.run([exe, "-q", *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"ragtune {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def run_inprocess(capsys, *args: str) -> tuple[int, str, str]:
    """Call the CLI entry point in this process (fast), returning (exit code, stdout, stderr)."""
    from ragtune.cli import app as cli_app

    old = sys.argv
    sys.argv = ["ragtune", "-q", *args]
    try:
        cli_app.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_timed(*args: str, timeout: int = 900) -> tuple[subprocess.CompletedProcess, list[tuple[float, str]]]:
    """Run the console script as a person would (no -q, output not a terminal), noting when
    each line of its console output arrives (seconds from the start)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAGTUNE_PROGRESS_INTERVAL="2")
    exe = os.path.join(os.path.dirname(sys.executable), "ragtune")
    t0 = time.monotonic()
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[tuple[float, str]] = []
    for line in proc.stdout:  # ends when the process closes its output
        lines.append((time.monotonic() - t0, line.rstrip("\n")))
    code = proc.wait(timeout=timeout)
    lines.append((time.monotonic() - t0, "<exit>"))
    out = "\n".join(text for _, text in lines)
    if code != 0:
        raise AssertionError(f"ragtune {' '.join(args)} failed ({code}):\n{out[-3000:]}")
    return subprocess.CompletedProcess(proc.args, code, out, ""), lines


@dataclass
class Running:
    url: str
    app: Any

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=30).json()


@contextmanager
def running(app: Any, timeout: float = 60.0) -> Iterator[Running]:
    """Run ``app`` under uvicorn on 127.0.0.1 (a free port the OS picks) in a thread, configured
    as ``ragtune serve`` configures it (protocol, timeouts)."""
    server = _uvicorn().Server(_config()(app, "127.0.0.1", 0, "warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:  # bounded poll for the start-up flag, not a timing sleep
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the test server did not start (see the log)")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Running(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout)
        assert not thread.is_alive(), "the test server did not stop"


def _uvicorn() -> Any:
    import uvicorn

    return uvicorn


def _config() -> Any:
    from ragtune_server.server import uvicorn_config

    return uvicorn_config
