"""The ``ragtune`` command line: it only wires the stages.

:mod:`.app` holds the typer app and its :func:`~ragtune.cli.app.main`, one
module per command holds that command, :mod:`.options` the options they share
(the server's ``serve`` reads them too, without building the app).
"""


def main() -> None:
    """The ``ragtune`` console script (:func:`ragtune.cli.app.main`)."""
    from ragtune.cli.app import main as run

    run()


__all__ = ["main"]
