"""The ``ragtune`` command line: it only wires the stages."""

from ragtune.cli.commands import app, main

__all__ = ["app", "main"]
