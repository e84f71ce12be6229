"""The ``ragtune`` command line: the typer app, its global options, the commands of other packages, and :func:`main`.

Each command lives in its own module (:mod:`.run`, :mod:`.generate`,
:mod:`.train`, :mod:`.evaluate`, :mod:`.index` with ``query``, :mod:`.export`)
and only wires the stages; options several commands take are declared once in
:mod:`.options`. Every input problem ends in a one-line ``error: ...`` naming
the path or option, and exit code 1; one unreadable file in a corpus is a warning.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import typer

from ragtune import __version__, console
from ragtune.cli import evaluate, export, generate, index, run, train
from ragtune.cli.output import set_quiet
from ragtune.errors import RagtuneError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Fine-tune the retriever of a RAG pipeline on your corpus, index it (Qdrant or Milvus), and report before/after.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ragtune {__version__}")
        raise typer.Exit()


def global_options(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display: print only the result."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show third-party logs and progress bars (always kept in WORKDIR/logs/ by run)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    set_quiet(quiet)
    console.setup(quiet=quiet, verbose=verbose)


app.callback()(global_options)
app.command("run")(run.run)
app.command("generate")(generate.generate)
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("index")(index.index)
app.command("query")(index.query)
app.command("export")(export.export)


# Commands that other packages contribute (``ragtune serve`` comes from ragtune_server):
# an entry point in the ``ragtune.commands`` group names ``register(app)``, which
# adds its command to this app. The core never imports those packages itself.
COMMAND_GROUP = "ragtune.commands"
# command → the extra that provides it, for the error when it is not installed
_EXTRA_COMMANDS = {"serve": "server"}


def _stand_in(target: typer.Typer, name: str, extra: str, reason: str) -> None:
    """Register ``name`` as a command that only explains how to get the real one."""

    @target.command(
        name,
        help=f"Not installed: needs the {extra} extra.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def _missing() -> None:
        raise RagtuneError(f'ragtune {name} needs the {extra} extra: pip install "ragtune[{extra}]"{reason}')


def load_commands(target: typer.Typer, entry_points: Iterable[Any] | None = None) -> None:
    """Add the commands of installed packages (entry point group ``ragtune.commands``) to ``target``.

    A command whose package cannot be imported, or that no installed package
    provides, becomes a stand-in that ends in a one-line ``error:`` naming the extra.
    """
    if entry_points is None:
        from importlib.metadata import entry_points as _entry_points

        entry_points = _entry_points(group=COMMAND_GROUP)
    failed: dict[str, str] = {}
    for ep in entry_points:
        try:
            register = ep.load()
        except ImportError as exc:
            failed[ep.name] = f" ({exc})"
            continue
        register(target)
    have = {c.name for c in target.registered_commands}
    for name, extra in _EXTRA_COMMANDS.items():
        if name not in have:
            _stand_in(target, name, extra, failed.get(name, ""))


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    try:
        # click's own handling would print a usage box; every error here is one line
        code = app(standalone_mode=False)
    except RagtuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except typer.TyperException as exc:  # (typer's click) a bad option value, a missing argument
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {message} (see ragtune {_command_name()} --help)".replace("  ", " "), err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted: re-run the same command to resume", err=True)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


def _command_name() -> str:
    """The sub-command being run, for the pointer to its help."""
    return next((a for a in sys.argv[1:] if not a.startswith("-")), "")


load_commands(app)

if __name__ == "__main__":
    main()
