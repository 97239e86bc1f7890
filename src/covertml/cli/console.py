"""The light half of the command line's shared pieces: consoles, logging, plain options.

Nothing here imports torch or a registry, so a command that must start fast
(``covertml guard`` launches its child before loading anything) can use it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from covertml.errors import ConfigError
from covertml.paths import DATA_ENV

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def setup_logging(verbose: bool) -> None:
    """Routes library logs to stderr (warnings only unless ``verbose``)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )


DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar=DATA_ENV,
        help="Folder with the offline dataset archives.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="Torch device: auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps.",
    ),
]
AmpOpt = Annotated[
    bool, typer.Option("--amp", help="Train in bf16 autocast on the device (GPUs; off by default).")
]


def parse_kv(pairs: list[str] | None, *, option: str) -> dict[str, Any]:
    """Parses ``key=value`` pairs; values are read as JSON when possible (``3``, ``[1,2]``).

    Example:
        >>> parse_kv(["depth=32", "name=x", "hidden=[64,32]"], option="--model-arg")
        {'depth': 32, 'name': 'x', 'hidden': [64, 32]}
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} expects KEY=VALUE, got {pair!r}", fix=f"{option} depth=32")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def print_json(data: Any) -> None:
    """Prints ``data`` as indented JSON on stdout (no markup)."""
    typer.echo(json.dumps(data, indent=2, default=str))
