"""``covertml demo``: every attack on the embedded digits data, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from covertml.attacks import AttackKey, create_attack
from covertml.attacks.extract import Extraction, extract_with_oracle
from covertml.attacks.extract import extract as run_extract
from covertml.audit import context_from_file, scan
from covertml.cli.common import console
from covertml.data import create_dataset
from covertml.data.base import Dataset
from covertml.defenses import create_sanitizer, sanitize_file
from covertml.errors import CovertMLError
from covertml.models import load_model
from covertml.serve import BackgroundServer, HTTPOracle, app_from_file
from covertml.training import accuracy_on, recipe
from covertml.training.pipeline import TrainedModel, train_and_save

DEMO_ATTACKS: tuple[tuple[str, dict[str, object]], ...] = (
    ("lsb", {"bits": 16, "passphrase": "demo-passphrase"}),
    ("correlation", {"lam": 5.0, "clip": 2.0}),
    ("sign", {"lam": 50.0}),
    ("capacity", {"ratio": 1.0}),
)


def _extract_white_box(run: TrainedModel, out: Path) -> Extraction:
    """The adversary's view: only the released file and the key."""
    loaded = load_model(run.model_path).model
    return run_extract(loaded, AttackKey.load(run.key_path or ""), out, dataset="digits")


def _extract_black_box(run: TrainedModel, out: Path) -> Extraction:
    """Serves the released model on a free loopback port and asks it for labels only."""
    key = AttackKey.load(run.key_path or "")
    with BackgroundServer(app_from_file(run.model_path)) as server:
        console.print(f"  prediction API (labels only) up at {server.url}; querying it")
        with HTTPOracle(server.url) as oracle:
            return extract_with_oracle(oracle, key, out, dataset="digits", endpoint=server.url)


def _defend(ds: Dataset, out: Path, runs: dict[str, TrainedModel], reference: Path) -> Table:
    """The defender's view: scan every model, then sanitize it and try the key again."""
    table = Table(title="demo defence: scan, then sanitize (lsb-randomize 16 bits)")
    for col in ("model", "scan verdict", "flagged by", "after sanitizing: acc", "secret"):
        table.add_column(col)
    sanitizer = create_sanitizer("lsb-randomize", bits=16)
    for name, run in runs.items():
        ctx = context_from_file(run.model_path, reference=reference, dataset=ds)
        report = scan(ctx, name=name)
        flagged = ", ".join(r.detector for r in report.reports if r.flagged) or "-"
        clean_path = out / name / "sanitized.safetensors"
        sanitize_file(run.model_path, clean_path, sanitizer, overwrite=True)
        clean = load_model(clean_path).model
        acc = accuracy_on(clean, ds.test)
        if run.key_path is None:
            secret = ""
        else:
            try:
                got = run_extract(
                    clean, AttackKey.load(run.key_path), out / name / "after", dataset="digits"
                )
                mape = got.scores.mape if got.scores is not None else None
                secret = f"still there (MAPE {mape:.1f})" if mape is not None else "still there"
            except CovertMLError:
                secret = "[green]gone[/]"
        colour = "red" if report.flagged else "green"
        table.add_row(name, f"[{colour}]{report.verdict}[/]", flagged, f"{acc:.4f}", secret)
    return table


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/demo"),
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: recipe).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Run the demo on the embedded digits data (no files needed).

    Trains an honest baseline and one model per attack (three white-box, and capacity
    abuse read back through a prediction API it starts on loopback), extracts the hidden
    training images with the adversary's key, then scans every model and sanitizes it.
    """
    console.rule("[bold]covertml demo[/] -- digits (embedded)")
    ds = create_dataset("digits")
    console.print(f"dataset: digits, {len(ds.train)} train / {len(ds.test)} test 8x8 images")
    config = recipe("digits", epochs=epochs, seed=seed)
    table = Table(title="demo summary: honest vs malicious training code")
    for col in ("training code", "test acc", "delta", "images stolen", "MAPE", "SSIM", "via"):
        table.add_column(col)
    steps = len(DEMO_ATTACKS) + 2
    console.print(f"[bold]1/{steps}[/] honest baseline")
    honest = train_and_save(ds, out / "honest", config=config, overwrite=True, progress=True)
    base = honest.result.test_accuracy or 0.0
    runs = {"honest": honest}
    table.add_row("honest", f"{base:.4f}", "", "", "", "", "")
    for i, (name, options) in enumerate(DEMO_ATTACKS, start=2):
        console.print(f"[bold]{i}/{steps}[/] attack [bold]{name}[/] {options}")
        run = train_and_save(
            ds,
            out / name,
            config=config,
            overwrite=True,
            progress=True,
            attack=create_attack(name, **options),
            dataset_ref={"name": "digits", "seed": seed},
        )
        target = out / name / "extracted"
        if name == "capacity":
            result = _extract_black_box(run, target)
            via = f"{result.details['queries']:,} label queries"
        else:
            result = _extract_white_box(run, target)
            via = "model file"
        runs[name] = run
        acc = run.result.test_accuracy or 0.0
        s = result.scores
        assert s is not None and s.mape is not None
        table.add_row(
            name,
            f"{acc:.4f}",
            f"{100 * (acc - base):+.2f} pts",
            str(result.items),
            f"{s.mape:.2f}",
            "n/a" if s.ssim is None else f"{s.ssim:.3f}",
            via,
        )
    console.print(table)
    console.print(f"[bold]{steps}/{steps}[/] defence: scan every model, sanitize, extract again")
    reference = train_and_save(
        ds,
        out / "reference",
        config=recipe("digits", epochs=epochs, seed=seed + 1000),
        overwrite=True,
        progress=True,
    )
    console.print(_defend(ds, out, runs, reference.model_path))
    console.print("original (top) vs recovered (bottom) images:")
    for name, _ in DEMO_ATTACKS:
        console.print(f"  {out / name / 'extracted' / 'original_vs_recovered.png'}")
    console.print(f"results in {out}/ (each folder: model.safetensors, key.json, extracted/)")


def register(app: typer.Typer) -> None:
    """Adds the command to ``app``."""
    app.command("demo")(demo)
