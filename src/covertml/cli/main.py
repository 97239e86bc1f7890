"""The ``covertml`` command: a typer app whose choices come from the registries.

Errors from bad input (:class:`~covertml.errors.CovertMLError`) are printed as one line
on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from covertml import __version__
from covertml.cli import (
    attack_cmds,
    demo_cmd,
    guard_cmd,
    inspect_cmds,
    reproduce_cmd,
    sanitize_cmds,
    scan_cmds,
    serve_cmds,
    train_cmds,
)
from covertml.cli.common import err_console, setup_logging
from covertml.errors import CovertMLError

app = typer.Typer(
    name="covertml",
    help="Models that remember too much: covert training-data leakage attacks, "
    "countermeasures and audits (Song et al., CCS 2017).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"covertml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    setup_logging(verbose)


inspect_cmds.register(app)
train_cmds.register(app)
attack_cmds.register(app)
serve_cmds.register(app)
sanitize_cmds.register(app)
scan_cmds.register(app)
demo_cmd.register(app)
reproduce_cmd.register(app)
guard_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``covertml`` console script."""
    try:
        app(args=argv, prog_name="covertml")
    except CovertMLError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
