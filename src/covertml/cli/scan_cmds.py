"""``covertml scan`` and ``covertml detectors``: look inside a model before it leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from covertml.audit import (
    DETECTORS,
    BatchReport,
    ScanReport,
    scan_paths,
    write_sarif,
)
from covertml.cli.common import DataDirOpt, JsonOpt, console, err_console, print_json
from covertml.devices import resolve_device


def _detector_help() -> str:
    return "Detector to run (repeatable; default: all that apply): " + ", ".join(DETECTORS.names())


_QUIET = {"values", "items", "queries", "skew", "bimodality", "chance", "label_entropy", "same_as"}


def _evidence(evidence: dict[str, Any]) -> str:
    shown = [(k, v) for k, v in evidence.items() if k not in _QUIET and not isinstance(v, list)]
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown[:4])


def _print(report: ScanReport) -> None:
    table = Table(title=f"covertml scan: {report.model}")
    for col in ("detector", "where", "statistic", "p", "p (family)", "flag", "evidence"):
        table.add_column(col)
    for r in report.reports:
        for f in r.findings[:3]:  # the most significant findings of each detector
            flag = "[bold red]FLAG[/]" if f.flagged else "[green]ok[/]"
            table.add_row(
                r.detector,
                f.layer or "(model)",
                f"{f.score:.3g}",
                f"{f.p_value:.2g}",
                f"{f.p_adjusted if f.p_adjusted is not None else f.p_value:.2g}",
                flag,
                _evidence(f.evidence),
            )
    console.print(table)
    tests = sum(f.tests for r in report.reports for f in r.findings)
    console.print(
        f"{sum(len(r.findings) for r in report.reports)} findings ({tests} hypotheses) "
        f"corrected together (Holm); flagged where p (family) <= alpha = {report.alpha:g}",
        highlight=False,
    )
    for r in report.reports:
        null = r.findings[0].null if r.findings else ""
        console.print(f"[bold]{r.detector}[/]: {r.note}", highlight=False)
        if null:
            console.print(f"  [dim]null: {null}[/]", highlight=False)
    for name, reason in report.skipped.items():
        console.print(f"[dim]skipped {name}: {reason}[/]")
    for name, reason in report.skipped_tensors.items():
        console.print(f"[dim]skipped tensor {name}: {reason}[/]", highlight=False)
    colour = "red" if report.flagged else "green"
    flagged = [r.detector for r in report.reports if r.flagged]
    why = f" (flagged by {', '.join(flagged)})" if flagged else ""
    console.print(
        f"verdict: [bold {colour}]{report.verdict}[/]{why} in {report.seconds:.2f} s",
        highlight=False,
    )


def _summary(batch: BatchReport) -> None:
    table = Table(title=f"covertml scan: {len(batch.reports) + len(batch.errors)} checkpoints")
    for col in ("checkpoint", "format", "values", "verdict", "smallest p (family)", "seconds"):
        table.add_column(col)
    for r in batch.reports:
        p = min((d.p_value for d in r.reports), default=1.0)
        colour = "red" if r.flagged else "green"
        table.add_row(
            r.model,
            r.format,
            f"{r.values:,}",
            f"[{colour}]{r.verdict}[/]",
            f"{p:.2g}",
            f"{r.seconds:.1f}",
        )
    for path in batch.errors:
        table.add_row(path, "", "", "[bold red]error[/]", "", "")
    console.print(table)


def scan_cmd(
    models: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH...",
            help="Model files, shard indexes, checkpoint directories or trees of them.",
        ),
    ],
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
    alpha: Annotated[
        float,
        typer.Option(
            help="Family-wise false-positive rate: an honest model is flagged with at most "
            "this probability, over all detectors, tensors and hypotheses."
        ),
    ] = 1e-3,
    allow_pickle: Annotated[
        bool,
        typer.Option(help="Also read .bin/.pt/.pth pickles (torch.load, weights_only=True)."),
    ] = False,
    sarif: Annotated[
        Path | None, typer.Option(help="Also write the findings as SARIF 2.1.0 to this file.")
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="Where the probe's queries run: cpu (default), auto, cuda, cuda:N or mps. "
            "Weight audits always read the file on the CPU, bit for bit.",
        ),
    ] = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Scan checkpoints for smuggled training data. Exit 0: nothing found, 1: findings, 2: error.

    Takes files (safetensors, .bin/.pt with --allow-pickle, .onnx, .gguf), shard indexes,
    checkpoint directories and trees of them. Every finding is a test against a null the
    detector builds itself (the owner's held-out items, shuffled orders, a reference
    model), and each checkpoint's verdict holds the false-positive rate at --alpha.
    """
    resolve_device(device)  # an absent device fails before anything is read
    ds = None
    if dataset is not None:
        from covertml.data import create_dataset

        ds = create_dataset(dataset, data_dir=data_dir)
    oracle = None
    if endpoint is not None:
        from covertml.serve.client import HTTPOracle

        oracle = HTTPOracle(endpoint)
    try:
        batch = scan_paths(
            models,
            detectors=detector,
            alpha=alpha,
            reference=reference,
            dataset=ds,
            oracle=oracle,
            seed=seed,
            allow_pickle=allow_pickle,
            device=device,
        )
    finally:
        if oracle is not None:
            oracle.close()
    if sarif is not None:
        write_sarif(sarif, batch.reports, errors=batch.errors)
    single = len(batch.reports) + len(batch.errors) == 1
    if single and batch.errors:  # one checkpoint that cannot be read: its one-line error
        raise next(iter(batch.failures.values()))
    for path, why in batch.errors.items():  # one line each, on stderr, whatever the output
        err_console.print(f"error: {path}: {why}", highlight=False, markup=False)
    if as_json:
        print_json(batch.reports[0].to_dict() if single else batch.to_dict())
    elif single:
        _print(batch.reports[0])
    else:
        for r in batch.reports:
            if r.flagged:
                _print(r)
        _summary(batch)
    raise typer.Exit(batch.exit_code)


def detectors(as_json: JsonOpt = False) -> None:
    """List the detectors."""
    rows = [
        (e.name, str(e.meta["kind"]) + ("" if e.meta.get("default", True) else " (opt-in)"), e.help)
        for e in DETECTORS
    ]
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
