"""``covertml scan`` and ``covertml detectors``: look inside a model before it leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from covertml.audit import DETECTORS, ScanReport, context_from_file, scan
from covertml.cli.common import DataDirOpt, JsonOpt, console, print_json


def _detector_help() -> str:
    return "Detector to run (repeatable; default: all that apply): " + ", ".join(DETECTORS.names())


_QUIET = {"values", "items", "queries", "skew", "bimodality", "chance", "label_entropy"}


def _print(report: ScanReport) -> None:
    table = Table(title=f"covertml scan: {report.model}")
    for col in ("detector", "layer", "score", "threshold", "flag", "evidence"):
        table.add_column(col)
    for r in report.reports:
        for f in r.findings[:3]:  # the most suspicious layers of each detector
            shown = [(k, v) for k, v in f.evidence.items() if k not in _QUIET][:3]
            evidence = ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown
            )
            flag = "[bold red]FLAG[/]" if f.flagged else "[green]ok[/]"
            layer = f.layer or "(model)"
            table.add_row(r.detector, layer, f"{f.score:.3f}", f"{f.threshold:g}", flag, evidence)
    console.print(table)
    for r in report.reports:
        console.print(f"[bold]{r.detector}[/]: {r.note}", highlight=False)
    for name, reason in report.skipped.items():
        console.print(f"[dim]skipped {name}: {reason}[/]")
    colour = "red" if report.flagged else "green"
    flagged = [r.detector for r in report.reports if r.flagged]
    why = f" (flagged by {', '.join(flagged)})" if flagged else ""
    console.print(
        f"verdict: [bold {colour}]{report.verdict}[/]{why} in {report.seconds:.2f} s",
        highlight=False,
    )


def scan_cmd(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Model file to scan.")],
    reference: Annotated[
        Path | None, typer.Option(help="A trusted model of the same task to compare with.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="The owner's data (owner audits).")
    ] = None,
    data_dir: DataDirOpt = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Probe this prediction API instead of the file's model.")
    ] = None,
    detector: Annotated[list[str] | None, typer.Option(help=_detector_help())] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling and probe inputs.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Scan a model for smuggled training data. Exit 0: nothing found, 1: findings, 2: error."""
    ds = None
    if dataset is not None:
        from covertml.data import create_dataset

        ds = create_dataset(dataset, data_dir=data_dir)
    oracle = None
    if endpoint is not None:
        from covertml.serve.client import HTTPOracle

        oracle = HTTPOracle(endpoint)
    try:
        ctx = context_from_file(model, reference=reference, dataset=ds, oracle=oracle, seed=seed)
        report = scan(ctx, detectors=detector, name=str(model))
    finally:
        if oracle is not None:
            oracle.close()
    if as_json:
        print_json(report.to_dict())
    else:
        _print(report)
    raise typer.Exit(report.exit_code)


def detectors(as_json: JsonOpt = False) -> None:
    """List the detectors."""
    rows = [(e.name, str(e.meta["kind"]), e.help) for e in DETECTORS]
    if as_json:
        print_json([{"name": n, "kind": k, "help": h} for n, k, h in rows])
        return
    table = Table(title="covertml detectors")
    for col in ("name", "kind", "description"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Adds the commands to ``app``."""
    app.command("scan")(scan_cmd)
    app.command("detectors")(detectors)
