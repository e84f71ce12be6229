"""Helpers the test modules share (fixtures live in conftest.py): paths, the tiny corpus's facts,
a real PDF writer, the CLI run as a person runs it, a real uvicorn server and a real Milvus 2.3.5
server on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

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


MILVUS_VERSION = "2.3.5"
MILVUS_COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")


class MilvusUnavailable(RuntimeError):
    """Why the Milvus server cannot run here, in one line (the fixture skips with it)."""


@dataclass
class LocalMilvus:
    """A Milvus server :func:`start_milvus` started: ``location`` is ragtune's ``milvus:http://…`` for it."""

    location: str
    uri: str
    base: Path
    server: Any  # milvus.MilvusServer

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM, SIGKILL after ``timeout`` s) and delete its folder (binaries, data, logs)."""
        proc = self.server.server_proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self.server.stop()  # its process has ended: this closes the log files it wrote to
        shutil.rmtree(self.base, ignore_errors=True)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 (the OS picks them; all held at once, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _last_log_line(base: Path) -> str:
    """The server's last words (its stderr, else its stdout log), for a one-line reason."""
    for name in ("milvus-stderr.log", "milvus-stdout.log"):
        log = base / "logs" / name
        lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        if lines:
            return lines[-1][:300]
    return "no log"


def start_milvus(base: Path, timeout: float = 180.0) -> LocalMilvus:
    """Start a real Milvus 2.3.5 standalone server (the ``milvus`` package: the server binary with embedded
    etcd and RocksMQ) on 127.0.0.1, with its binaries (~520 MB unpacked), data and logs under ``base``.

    Every component advertises 127.0.0.1 (``{component}.ip``) and every port is one the OS found free,
    the embedded etcd's too (its own config file: by default it takes 2379/2380), so two servers can run
    side by side. Milvus 2.3.5 binds its gRPC and metrics listeners on every interface; only the
    addresses it advertises can be pinned. Its output goes to ``base/logs``, never to the console.

    Args:
        base: an empty folder for the server (deleted by :meth:`LocalMilvus.stop`).
        timeout: seconds to wait for the server to answer (a bounded poll of /healthz and a client call).

    Raises:
        MilvusUnavailable: the package is missing, or the server exited or did not answer in time.
    """
    try:
        import milvus
        from milvus import MilvusServer, MilvusServerConfig
    except ImportError:
        raise MilvusUnavailable(f"milvus=={MILVUS_VERSION} is not installed "
                                "(pip install 'ragtune[milvus-server]'; Linux x86-64 only)") from None
    if milvus.__version__ != MILVUS_VERSION:
        raise MilvusUnavailable(f"milvus {milvus.__version__} is installed; these tests pin {MILVUS_VERSION}")
    from pymilvus import MilvusClient

    config = MilvusServerConfig()
    port_keys = [k for k in config.configurable_items if k.endswith("_port")]
    *ports, peer, web = _free_ports(len(port_keys) + 2)
    server = MilvusServer(config, wait_for_started=False, **dict(zip(port_keys, ports)))
    server.webservice_port = web  # /healthz and metrics: start() takes it when it is free
    server.set_base_dir(str(base))
    for component in MILVUS_COMPONENTS:
        server.config.set(f"{component}.ip", "127.0.0.1")
    server.config.set("common.gracefulStopTimeout", 5)  # seconds a SIGTERM waits on work in flight (was 1800)
    client_port = server.config.configs["etcd_port"]  # milvus.yaml's etcd.endpoints
    etcd = base / "configs" / "etcd.yaml"
    etcd.write_text(
        "name: default\n"
        f"listen-client-urls: http://127.0.0.1:{client_port}\nadvertise-client-urls: http://127.0.0.1:{client_port}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer}\ninitial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer}\n",
        encoding="utf-8",
    )
    cwd = os.getcwd()
    try:
        # milvus.yaml has no etcd.config.path to set; Milvus reads every setting from the environment too
        with mock.patch.dict(os.environ, {"ETCD_CONFIG_PATH": str(etcd)}):
            server.start()  # unpacks the binaries into base/bin, writes base/configs/milvus.yaml, starts it
    except Exception as exc:
        LocalMilvus("", "", base, server).stop()
        raise MilvusUnavailable(f"Milvus {MILVUS_VERSION} did not start: {type(exc).__name__}: {exc}") from exc
    finally:
        os.chdir(cwd)  # start() changes into base and back; not if it failed half-way
    local = LocalMilvus(f"milvus:http://127.0.0.1:{server.listen_port}", f"http://127.0.0.1:{server.listen_port}",
                        base, server)
    proc = server.server_proc
    deadline = time.monotonic() + timeout
    while True:  # a bounded poll for readiness: /healthz says OK, then a client call answers
        if proc.poll() is not None:
            line = _last_log_line(base)
            local.stop()
            raise MilvusUnavailable(f"Milvus {MILVUS_VERSION} exited ({proc.returncode}) at start: {line}")
        try:
            if "OK" in httpx.get(f"http://127.0.0.1:{web}/healthz", timeout=5).text:
                client = MilvusClient(uri=local.uri, timeout=10)
                client.list_collections()
                client.close()
                return local
        except Exception:  # noqa: BLE001 - not up yet: refused, reset, or not serving
            pass
        if time.monotonic() > deadline:
            line = _last_log_line(base)
            local.stop()
            raise MilvusUnavailable(f"Milvus {MILVUS_VERSION} did not answer on {local.uri} in {timeout:.0f} s: {line}")
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.25)  # the pause between polls, cut short if the server exits
