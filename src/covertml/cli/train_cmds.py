"""Commands that train: ``train`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from covertml.cli.common import (
    DataDirOpt,
    DatasetOpt,
    JsonOpt,
    console,
    model_help,
    parse_kv,
    print_json,
)
from covertml.data import create_dataset
from covertml.training import recipe
from covertml.training.pipeline import train_and_save


def train(
    dataset: DatasetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help=model_help())] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(help="Model argument KEY=VALUE (repeatable), e.g. depth=32."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: recipe).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: recipe).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: recipe).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd or adam (default: recipe).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="L2 penalty.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialization, order and subsets.")] = 0,
    train_limit: Annotated[int | None, typer.Option(help="Train on a seeded subset.")] = None,
    test_limit: Annotated[int | None, typer.Option(help="Test on a seeded subset.")] = None,
    data_dir: DataDirOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace results already in --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a model honestly; writes OUT/model.safetensors and OUT/metrics.json."""
    ds = create_dataset(
        dataset, data_dir=data_dir, train_limit=train_limit, test_limit=test_limit, seed=seed
    )
    config = recipe(
        dataset,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        optimizer=optimizer,
        weight_decay=weight_decay,
        seed=seed,
    )
    run = train_and_save(
        ds,
        out,
        model_name=model,
        model_args=parse_kv(model_arg, option="--model-arg"),
        config=config,
        overwrite=overwrite,
        progress=not as_json,
    )
    if as_json:
        print_json(run.metrics)
        return
    console.print(
        f"trained [bold]{run.metrics['model']['name']}[/] on {dataset} "
        f"({len(ds.train)} examples, {run.result.seconds:.1f}s): "
        f"test accuracy [bold]{run.result.test_accuracy:.4f}[/]"
    )
    console.print(f"wrote {run.model_path} and {run.metrics_path}")


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/demo"),
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: recipe).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Run the demo on the embedded digits data (no files needed)."""
    console.rule("[bold]covertml demo[/] -- digits (embedded)")
    ds = create_dataset("digits")
    console.print(f"dataset: digits, {len(ds.train)} train / {len(ds.test)} test 8x8 images")
    honest = train_and_save(
        ds,
        out / "honest",
        config=recipe("digits", epochs=epochs, seed=seed),
        overwrite=True,
        progress=True,
    )
    table = Table(title="demo summary")
    for col in ("model", "attack", "test accuracy", "train time", "file"):
        table.add_column(col)
    table.add_row(
        honest.metrics["model"]["name"],
        "none (honest baseline)",
        f"{honest.result.test_accuracy:.4f}",
        f"{honest.result.seconds:.1f}s",
        str(honest.model_path),
    )
    console.print(table)
    console.print(f"results in {out}/")


def register(app: typer.Typer) -> None:
    """Adds the commands to ``app``."""
    app.command("train")(train)
    app.command("demo")(demo)
