"""``covertml demo``: every attack on the embedded digits data, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from covertml.attacks import AttackKey, create_attack
from covertml.attacks.extract import Extraction, extract_with_oracle
from covertml.attacks.extract import extract as run_extract
from covertml.cli.common import console
from covertml.data import create_dataset
from covertml.models import load_model
from covertml.serve import BackgroundServer, HTTPOracle, app_from_file
from covertml.training import recipe
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


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/demo"),
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: recipe).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Run the demo on the embedded digits data (no files needed).

    Trains an honest baseline and one model per attack (three white-box, and capacity abuse
    read back through a prediction API it starts on loopback), extracts the hidden training
    images with the adversary's key, and shows what came back.
    """
    console.rule("[bold]covertml demo[/] -- digits (embedded)")
    ds = create_dataset("digits")
    console.print(f"dataset: digits, {len(ds.train)} train / {len(ds.test)} test 8x8 images")
    config = recipe("digits", epochs=epochs, seed=seed)
    table = Table(title="demo summary: honest vs malicious training code")
    for col in ("training code", "test acc", "delta", "images stolen", "MAPE", "SSIM", "via"):
        table.add_column(col)
    steps = len(DEMO_ATTACKS) + 1
    console.print(f"[bold]1/{steps}[/] honest baseline")
    honest = train_and_save(ds, out / "honest", config=config, overwrite=True, progress=True)
    base = honest.result.test_accuracy or 0.0
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
    console.print("original (top) vs recovered (bottom) images:")
    for name, _ in DEMO_ATTACKS:
        console.print(f"  {out / name / 'extracted' / 'original_vs_recovered.png'}")
    console.print(f"results in {out}/ (each folder: model.safetensors, key.json, extracted/)")


def register(app: typer.Typer) -> None:
    """Adds the command to ``app``."""
    app.command("demo")(demo)
