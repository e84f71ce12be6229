"""``serve()``: what ``ragtune serve`` runs — build the app, check the collection, run uvicorn.

The collection is opened here, before uvicorn starts, so a missing collection,
a locked or unreadable embedded store or an index built by another model
reaches the user as one ``RagtuneError`` line (the CLI prints it and exits 1)
rather than as a traceback from the ASGI lifespan or a server that starts
"degraded". The app's lifespan adopts the open client and closes it at shutdown.
The options are checked before the model loads (seconds, not a minute, to hear
of a typo): an empty key, a bind beyond loopback without a key, a bad
``--allow-host``/``--allow-origin``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Sequence
from typing import Any

from ragtune.errors import ConfigError, RagtuneError
from ragtune.index.chunk_index import check_location
from ragtune_server.app import create_app
from ragtune_server.auth import check_api_key
from ragtune_server.batching import BatchConfig
from ragtune_server.hosts import HostPolicy
from ragtune_server.limits import Limits

log = logging.getLogger("ragtune_server")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: addresses no other machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "info") -> Any:
    """uvicorn's ``Config`` for ``app`` with its :class:`Limits`' timeouts (the tests run this too).

    The h11 protocol with a header deadline (:mod:`ragtune_server.protocol`), no
    WebSocket upgrades (none are served), uvicorn's keep-alive timeout from the limits.
    """
    import uvicorn

    from ragtune_server.protocol import protocol_class

    limits: Limits = app.state.ragtune.limits
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        http=protocol_class(limits.header_timeout_s),
        ws="none",
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]  # used as a float
    )


def serve(
    model: str | os.PathLike[str] | Any = "default",
    qdrant: str | None = None,
    collection: str = "ragtune",
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    qdrant_api_key: str | None = None,
    *,
    model_name: str | None = None,
    limits: Limits | None = None,
    batching: BatchConfig | None = None,
    device: str | None = None,
    threads: int | None = None,
    log_level: str = "info",
    backend: str = "torch",
    backend_file: str | None = None,
    allow_hosts: Sequence[str] = (),
    allow_origins: Sequence[str] = (),
    insecure_no_key: bool = False,
    log_queries: str | None = None,
) -> None:
    """Serve ``model`` (and ``collection`` at ``qdrant`` for /v1/search) until interrupted.

    Binds to loopback unless ``host`` says otherwise; binding elsewhere needs an
    ``api_key`` (anyone who can reach the port could use the model and read the
    collection), unless ``insecure_no_key`` says to serve it open anyway. Requests
    must name this server in ``Host`` (``allow_hosts`` adds names) and carry no
    foreign ``Origin`` (``allow_origins`` adds web apps): :mod:`ragtune_server.hosts`.
    ``threads`` sets torch's intra-op threads for the process (default: torch's
    choice, one per core); on a CPU
    shared with other work, fewer threads than cores avoids OpenMP threads
    spinning while they wait for a busy core (``OMP_NUM_THREADS`` does the same
    for ``ragtune serve``).
    """
    import torch
    import uvicorn

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(message)s")
    check_api_key(api_key)
    if not is_loopback(host) and api_key is None:
        if not insecure_no_key:
            raise ConfigError(
                f"--host {host} without an API key: anyone who can reach port {port} could use "
                "the model and read the collection; pass --api-key KEY (or RAGTUNE_API_KEY), "
                "or --insecure-no-key to serve it open"
            )
        log.warning(
            "binding to %s without an API key (--insecure-no-key): anyone who can reach port %d "
            "can use the model and read the collection",
            host,
            port,
        )
    hosts = HostPolicy.for_bind(host, port, allow_hosts, allow_origins)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads={threads}: must be at least 1")
        torch.set_num_threads(threads)
    if qdrant is not None:
        check_location(
            qdrant
        )  # before the model loads: a typo should fail in a second, not after it
    app = create_app(
        model,
        qdrant=qdrant,
        collection=collection,
        api_key=api_key,
        qdrant_api_key=qdrant_api_key,
        model_name=model_name,
        limits=limits,
        batching=batching,
        device=device,
        backend=backend,
        backend_file=backend_file,
        hosts=hosts,
        query_log=log_queries,
    )
    log.info("torch intra-op threads: %d", torch.get_num_threads())
    ctx = app.state.ragtune
    ctx.open_search()  # fail here, with a one-line error, not inside uvicorn
    try:
        server = uvicorn.Server(uvicorn_config(app, host, port, log_level))
        server.run()
    finally:
        ctx.close_search()
    if not server.started:
        raise RagtuneError(f"the server did not start on {host}:{port}; see the log above")
