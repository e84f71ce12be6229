"""Helpers the test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx


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
