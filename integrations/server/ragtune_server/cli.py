"""The one serve command line: ``ragtune serve`` and ``python -m ragtune_server``.

ragtune's CLI finds :func:`register` through the ``ragtune.commands`` entry
point group, so the core never imports this package; ``python -m
ragtune_server`` runs the same command through :func:`main`. Defaults come
from :func:`ragtune_server.serve`'s signature and the :class:`Limits` /
:class:`BatchConfig` dataclasses, so they are stated once, there.
"""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path

import typer

from ragtune.cli.options import BACKEND_FILE_HELP, BACKEND_HELP, STORE_HELP
from ragtune.errors import RagtuneError
from ragtune_server.batching import BatchConfig
from ragtune_server.limits import Limits
from ragtune_server.server import serve

_SERVE = inspect.signature(serve).parameters


class LogLevel(str, Enum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


def serve_command(
    model: str = typer.Option(
        _SERVE["model"].default,
        "--model",
        "-m",
        help="Model folder, hub id, or 'default' (the bundled all-MiniLM-L6-v2).",
    ),
    model_name: str | None = typer.Option(
        None, "--model-name", help="Model id reported to clients (default: the folder name)."
    ),
    qdrant: str | None = typer.Option(
        _SERVE["qdrant"].default, "--store", "--qdrant", help=f"For /v1/search (optional). {STORE_HELP}"
    ),
    collection: str = typer.Option(_SERVE["collection"].default, "--collection", "-c"),
    host: str = typer.Option(
        _SERVE["host"].default, "--host", help="Bind address (loopback unless told otherwise)."
    ),
    port: int = typer.Option(_SERVE["port"].default, "--port"),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="RAGTUNE_API_KEY",
        help="Require 'Authorization: Bearer KEY'; /v1/release, /v1/reload and /v1/status need it.",
    ),
    insecure_no_key: bool = typer.Option(
        False,
        "--insecure-no-key",
        help="Serve beyond loopback (--host) without an API key: anyone who can reach the port "
        "can use it.",
    ),
    allow_host: list[str] = typer.Option(
        [],
        "--allow-host",
        help="Another name (or name:port) clients may reach the server by, as a proxy or port "
        "mapping sends it in Host (repeatable); default: the bound address, localhost, "
        "127.0.0.1, [::1] at --port.",
    ),
    allow_origin: list[str] = typer.Option(
        [],
        "--allow-origin",
        help="A web app's origin (http://localhost:3000) that may call the server from a "
        "browser (repeatable); other origins are refused.",
    ),
    qdrant_api_key: str | None = typer.Option(None, "--qdrant-api-key", envvar="QDRANT_API_KEY"),
    log_queries: str | None = typer.Option(
        None,
        "--log-queries",
        help="Append each /v1/search (query, returned ids and scores, mode, model) to DIR/queries.jsonl, "
        "rotated at 64 MiB, and take POST /v1/feedback; ragtune run can then train on them. It holds "
        "your users' questions: no headers, keys or client addresses are written. Off by default.",
    ),
    device: str | None = typer.Option(
        _SERVE["device"].default, "--device", help="torch device (default: CUDA when present)."
    ),
    threads: int | None = typer.Option(
        _SERVE["threads"].default,
        "--threads",
        help="torch threads (default: one per core; fewer on a shared CPU).",
    ),
    max_inputs: int = typer.Option(Limits.max_inputs, "--max-inputs", help="Inputs per request."),
    max_input_chars: int = typer.Option(
        Limits.max_input_chars, "--max-input-chars", help="Characters per input."
    ),
    timeout_headers: float = typer.Option(
        Limits.header_timeout_s,
        "--timeout-headers",
        help="Seconds a connection may take to send a request's headers.",
    ),
    timeout_body: float = typer.Option(
        Limits.body_timeout_s, "--timeout-body", help="Seconds a request's body may take to arrive."
    ),
    timeout_keep_alive: float = typer.Option(
        Limits.keep_alive_s, "--timeout-keep-alive", help="Seconds an idle connection stays open."
    ),
    max_batch_size: int = typer.Option(
        BatchConfig.max_batch_size, "--max-batch-size", help="Texts per merged model call."
    ),
    max_wait_ms: float = typer.Option(
        BatchConfig.max_wait_ms,
        "--max-wait-ms",
        help="How long a request waits for others to join.",
    ),
    log_level: LogLevel = typer.Option(LogLevel(_SERVE["log_level"].default), "--log-level"),
    backend: str = typer.Option(
        _SERVE["backend"].default,
        "--backend",
        help=BACKEND_HELP,
    ),
    backend_file: str | None = typer.Option(
        _SERVE["backend_file"].default, "--backend-file", help=BACKEND_FILE_HELP
    ),
) -> None:
    """Serve an OpenAI-compatible /v1/embeddings and a /v1/search API (needs the server extra)."""
    try:
        serve(
            model=model,
            qdrant=qdrant,
            collection=collection,
            host=host,
            port=port,
            api_key=api_key,
            qdrant_api_key=qdrant_api_key,
            model_name=model_name or Path(model).name or model,
            limits=Limits(
                max_inputs=max_inputs,
                max_input_chars=max_input_chars,
                header_timeout_s=timeout_headers,
                body_timeout_s=timeout_body,
                keep_alive_s=timeout_keep_alive,
            ),
            batching=BatchConfig(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms),
            device=device,
            threads=threads,
            log_level=log_level.value,
            backend=backend,
            backend_file=backend_file,
            allow_hosts=allow_host,
            allow_origins=allow_origin,
            insecure_no_key=insecure_no_key,
            log_queries=log_queries,
        )
    except RagtuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app`` (ragtune's ``ragtune.commands`` entry point), replacing any stand-in."""
    app.registered_commands[:] = [c for c in app.registered_commands if c.name != "serve"]
    app.command("serve")(serve_command)


def main(argv: list[str] | None = None) -> None:
    """``python -m ragtune_server``: the serve command on its own."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app(args=argv, prog_name="python -m ragtune_server")
