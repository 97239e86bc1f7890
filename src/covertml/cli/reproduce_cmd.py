"""``covertml reproduce`` (run a grid of experiments) and ``covertml report`` (its HTML report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from covertml.cli.common import DataDirOpt, console
from covertml.devices import resolve_device
from covertml.runner import Progress as RunProgress
from covertml.runner import load_grid, run_grid
from covertml.runner.config import on_device

GridDeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="Train every dataset on this device: auto (CUDA when present), cpu, cuda, cuda:N "
        "or mps (default: the grid's device key, else auto).",
        show_default=False,
    ),
]
GridAmpOpt = Annotated[
    bool | None,
    typer.Option(
        "--amp/--no-amp",
        help="bf16 autocast on the device (default: the grid's amp key).",
        show_default=False,
    ),
]


def format_eta(seconds: float | None) -> str:
    """``12m05s`` style, or ``?`` before the first cell has finished.

    Example:
        >>> format_eta(725.0), format_eta(None)
        ('12m05s', '?')
    """
    if seconds is None:
        return "?"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def status_line(p: RunProgress) -> str:
    """The progress text: cells done, running and left, failures, ETA."""
    failed = f" · [red]{p.failed} failed[/]" if p.failed else ""
    eta = format_eta(p.eta_seconds)
    return f"{p.done} done · {p.running} running · {p.left} left{failed} · ETA {eta}"


def run_with_progress(
    grid_path: Path,
    out: Path,
    *,
    jobs: int,
    data_dir: Path | None,
    device: str | None = None,
    amp: bool | None = None,
    engine: str = "local",
    address: str | None = None,
) -> None:
    """Runs the grid with a live progress bar and one line per finished cell."""
    grid = on_device(load_grid(grid_path), device, amp=amp)
    devices = sorted({str(t.get("device", "auto")) for t in grid.datasets.values()})
    if engine == "local":  # a Ray task checks the device on its own node
        for name in devices:
            resolve_device(name)
        where = f"{jobs} worker{'s' if jobs > 1 else ''}"
    else:
        where = f"Ray ({address or 'a local cluster'})"
    console.print(
        f"grid [bold]{grid.name}[/] ({grid_path}): {len(grid.cells())} cells, {where}, "
        f"device {', '.join(devices)}, results in {out}/"
    )
    columns = (
        TextColumn("[bold]reproduce[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("", total=len(grid.cells()))

        def show(p: RunProgress) -> None:
            bar.update(task, completed=p.done + p.failed, description=status_line(p))
            if p.last.startswith(("ok:", "failed:")):
                colour = "green" if p.last.startswith("ok") else "red"
                bar.console.print(
                    f"  [{colour}]{p.last.split(':')[0]}[/] {p.last.split(': ', 1)[1]}  "
                    f"[dim]({status_line(p)})[/]",
                    highlight=False,
                )
            elif p.last == "resumed":
                bar.console.print(f"  resuming: {p.done} cells already recorded", highlight=False)

        summary = run_grid(
            grid,
            out,
            jobs=jobs,
            data_dir=data_dir,
            on_progress=show,
            engine=engine,
            address=address,
        )
    console.print(
        f"{summary.done}/{summary.total} cells recorded ({summary.resumed} from before), "
        f"{summary.failed} failed, {summary.seconds:.0f} s, "
        f"peak memory {summary.peak_rss_mb:.0f} MB"
    )
    console.print(f"tables: {out / 'results.csv'} and {out / 'results.json'}")


def reproduce(
    config: Annotated[Path, typer.Option("--config", "-c", help="Grid file (TOML).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (resumes if it exists).")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes (local engine).")] = 1,
    data_dir: DataDirOpt = None,
    device: GridDeviceOpt = None,
    amp: GridAmpOpt = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local (this machine: one process, or --jobs workers) or ray (each job a Ray "
            "task with the grid's [resources]; needs covertml[ray]).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="[ray] cluster to join: auto (started with ray start here) or "
            "ray://HOST:10001 (default: a local cluster for this run).",
            show_default=False,
        ),
    ] = None,
    report: Annotated[bool, typer.Option(help="Write DIR/index.html at the end.")] = True,
) -> None:
    """Run a grid of experiments (datasets x attacks x settings x sanitizers x seeds).

    Every cell is recorded as it finishes (DIR/cells/, DIR/results.csv, DIR/results.json);
    run the same command again after an interruption and it resumes where it stopped.
    """
    try:
        run_with_progress(
            config,
            out,
            jobs=jobs,
            data_dir=data_dir,
            device=device,
            amp=amp,
            engine=engine,
            address=address,
        )
    except KeyboardInterrupt:
        console.print(
            f"[bold yellow]interrupted[/]: finished cells are kept in {out}/; "
            "run the same command again to resume"
        )
        raise typer.Exit(130) from None
    if report:
        write_report(out)


def write_report(out: Path) -> None:
    """Builds the HTML report of a run folder and prints its path."""
    from covertml.report.html import build_report

    path = build_report(out)
    console.print(f"report: {path.resolve()}  (open it in a browser: no server needed)")


def report(
    run_dir: Annotated[Path, typer.Argument(help="A folder written by covertml reproduce.")],
) -> None:
    """(Re)build DIR/index.html, its figures (PNG) and tables from a run folder."""
    write_report(run_dir)


def register(app: typer.Typer) -> None:
    """Adds the commands to ``app``."""
    app.command("reproduce")(reproduce)
    app.command("report")(report)
