"""``covertml guard``: run training code you do not trust, under supervision."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from covertml.cli.console import DataDirOpt, JsonOpt, console, parse_kv, print_json
from covertml.supervise.defaults import DEFAULT_BUDGET, GUARD_ALPHA

# Only light imports here: ``covertml guard`` starts the script's child process before
# torch, the registries or the owner's data are loaded (see covertml.cli.main).
OwnerDataOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="The owner's data: a dataset name (covertml datasets lists them), npz:PATH or "
        "imagefolder:PATH.",
    ),
]


def guard(
    command: Annotated[
        list[str], typer.Argument(help="The training command, after --: python train.py ARGS")
    ],
    dataset: OwnerDataOpt,
    data_dir: DataDirOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the report.")] = Path(
        "guard-report"
    ),
    alpha: Annotated[
        float, typer.Option("--alpha", help="Family-wise false-positive rate of the verdict.")
    ] = GUARD_ALPHA,
    sanitize: Annotated[
        str | None,
        typer.Option("--sanitize", help="Write a sanitized copy beside each model file."),
    ] = None,
    budget: Annotated[
        float, typer.Option("--budget", help="Share of the run's time the input checks may take.")
    ] = DEFAULT_BUDGET,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Dataset option KEY=VALUE.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the guard's random choices.")] = 0,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="Where the guard's probe queries of the written models run: cpu (default), "
            "auto, cuda, cuda:N or mps. The script picks its own device.",
        ),
    ] = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Runs COMMAND (a Python training script) under supervision.

    Every batch it feeds a model is matched against DATASET, weight snapshots are audited
    while they form, parameter changes outside optimizer steps and removed hooks are
    flagged, and every model file it writes is scanned. Exit 0 nothing found, 1 findings,
    2 error (the script's own failure included).

    Example: covertml guard -d digits --out report -- python train.py --epochs 10
    """
    if device != "cpu":  # checked before the script starts (torch is loaded only for this)
        from covertml.devices import resolve_device

        resolve_device(device)
    from covertml.supervise.run import run_guarded  # light: the script starts first

    report = run_guarded(
        command,
        dataset=dataset,
        data_dir=str(data_dir) if data_dir else None,
        dataset_options=parse_kv(option, option="--option"),
        out=out,
        alpha=alpha,
        sanitize=sanitize,
        budget=budget,
        seed=seed,
        device=device,
    )
    from covertml.report.guard_page import write_guard_html
    from covertml.supervise.report import unmatched_images
    from covertml.supervise.store import load_examples

    examples = unmatched_images(load_examples(out.resolve() / "observed"))  # no snapshots
    page = write_guard_html(report, out / "guard.html", examples=examples)
    if as_json:
        print_json(report.to_dict())
    else:
        table = Table(title=f"covertml guard: {' '.join(command)}")
        for col in ("flag", "kind", "what was seen", "p (family)"):
            table.add_column(col)
        for f in report.findings:
            table.add_row(
                "[bold red]FLAG[/]" if f.flagged else "[green]ok[/]",
                f.kind,
                f.message,
                "" if f.p_value is None else f"{f.p_value:.2g}",
            )
        console.print(table)
        colour = "red" if report.flagged else ("yellow" if report.exit_code else "green")
        tail = "" if not report.script_exit else f"; the script exited with {report.script_exit}"
        console.print(
            f"verdict: [bold {colour}]{report.verdict}[/]{tail}; report: {page}", highlight=False
        )
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Adds ``guard`` to ``app``."""
    app.command(
        "guard",
        context_settings={"allow_interspersed_args": False},
        no_args_is_help=True,
    )(guard)
