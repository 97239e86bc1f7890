"""The root of the ``covertml`` command: its help, ``-v`` and ``--version``; light to import."""

from __future__ import annotations

from typing import Annotated

import typer

from covertml import __version__
from covertml.cli.console import setup_logging

HELP = (
    "Models that remember too much: covert training-data leakage attacks, "
    "countermeasures and audits (Song et al., CCS 2017)."
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"covertml {__version__}")
        raise typer.Exit()


def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    setup_logging(verbose)


def make_app() -> typer.Typer:
    """A ``covertml`` app with the root options and no commands yet."""
    app = typer.Typer(
        name="covertml",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    return app
