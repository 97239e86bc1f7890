"""Entry point of the ``covertml`` command.

Errors from bad input (:class:`~covertml.errors.CovertMLError`) are printed as one line
on stderr with exit status 2, never as a traceback.

``covertml guard`` is dispatched without building the whole app: its training script runs
in a child process, which starts before torch, the registries and the owner's data are
loaded here (they load while the script runs), so the guard costs the script little time.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from covertml.errors import CovertMLError

if TYPE_CHECKING:
    import typer

ROOT_FLAGS = ("-v", "--verbose")


def command_of(args: list[str]) -> str | None:
    """The subcommand named in ``args`` (after the root flags), if any.

    Example:
        >>> command_of(["-v", "guard", "-d", "digits"]), command_of(["--help"])
        ('guard', None)
    """
    rest = list(args)
    while rest and rest[0] in ROOT_FLAGS:
        rest = rest[1:]
    return rest[0] if rest and not rest[0].startswith("-") else None


def _app_for(args: list[str]) -> typer.Typer:
    if command_of(args) == "guard":
        from covertml.cli import guard_cmd
        from covertml.cli.root import make_app

        light = make_app()
        guard_cmd.register(light)
        return light
    from covertml.cli.app import app

    return app


def _leave(done: SystemExit) -> NoReturn:
    """Exits at once with ``done``'s status, after flushing the streams and the logs.

    Tearing down torch, scipy and the owner's data takes about half a second that a
    guarded run would otherwise add to the script's time; every file is already closed.
    """
    code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``covertml`` console script."""
    from covertml.cli.console import err_console

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        _app_for(args)(args=args, prog_name="covertml")
    except SystemExit as done:
        if argv is None and command_of(args) == "guard":
            _leave(done)  # the report is written; the interpreter's teardown is not needed
        raise
    except CovertMLError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)


def __getattr__(name: str) -> Any:
    """``covertml.cli.main.app``: the whole app (built on first use)."""
    if name == "app":
        from covertml.cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    main()
