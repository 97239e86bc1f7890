"""``covertml serve``: the label-only prediction API for a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from covertml.cli.common import console, err_console
from covertml.errors import ConfigError


def serve_cmd(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A .safetensors model.")],
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback by default; 0.0.0.0 exposes it).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Most inputs per request.")] = 8192,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, in MB.")] = 64.0,
    budget: Annotated[
        int | None, typer.Option(help="Inputs each client may ever ask about (429 after).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Inputs per second per client (429 above).")
    ] = None,
) -> None:
    """Serve MODEL's predicted labels (labels only) over HTTP: POST /predict, GET /health.

    Bodies: JSON {"inputs": [...]} (or {"sparse": {"indices", "values"}} for text models),
    or a float32 .npy (application/x-npy) / CSR .npz (application/x-npz) for large batches.
    OpenAPI docs at /docs. Stop with Ctrl-C.
    """
    if not 1 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range", fix="choose a port in 1-65535")
    try:
        from covertml.serve import ServeLimits, app_from_file, is_loopback, serve  # FastAPI

        limits = ServeLimits(
            max_batch=max_batch,
            max_body_bytes=int(max_body_mb * 1024 * 1024),
            query_budget=budget,
            rate=rate,
        )
    except ValueError as exc:
        raise ConfigError(str(exc), fix="see covertml serve --help") from None
    app = app_from_file(model_path, limits=limits)
    if not is_loopback(host):
        err_console.print(
            f"[bold yellow]warning:[/] binding {host} exposes the model beyond this machine"
        )
    console.print(f"serving {model_path} on http://{host}:{port} (docs: /docs; Ctrl-C stops)")
    try:
        serve(app, host=host, port=port)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})",
            fix="choose another --port or stop what is using it",
        ) from None


def register(app: typer.Typer) -> None:
    """Adds the command to ``app``."""
    app.command("serve")(serve_cmd)
