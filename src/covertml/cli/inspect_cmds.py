"""Read-only commands: ``datasets``, ``models``, ``eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from covertml.cli.common import DataDirOpt, DatasetOpt, JsonOpt, console, print_json
from covertml.data import create_dataset, dataset_status
from covertml.errors import ConfigError
from covertml.models import MODELS, load_model
from covertml.training import accuracy_on


def datasets(data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List the datasets: found or not, where, and their sizes."""
    rows = dataset_status(data_dir)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    table = Table(title="covertml datasets")
    for col in ("name", "modality", "found", "train", "test", "classes", "location"):
        table.add_column(col)
    for r in rows:
        found = "[green]yes[/]" if r.found else "[red]no[/]"
        m = r.meta
        table.add_row(
            r.name,
            r.modality,
            found,
            str(m.get("n_train", "")),
            str(m.get("n_test", "")),
            str(m.get("classes", "")),
            r.location,
        )
    console.print(table)
    if not all(r.found for r in rows):
        console.print("Missing archives: point --data-dir or COVERTML_DATA at their folder.")


def models(as_json: JsonOpt = False) -> None:
    """List the model architectures."""
    rows = [
        {"name": e.name, "modality": e.meta["modality"], "loss": e.meta["loss"], "help": e.help}
        for e in MODELS
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title="covertml models")
    for col in ("name", "input", "loss", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["modality"], r["loss"], r["help"])
    console.print(table)


def eval_(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A .safetensors model.")],
    dataset: DatasetOpt,
    data_dir: DataDirOpt = None,
    test_limit: Annotated[int | None, typer.Option(help="Evaluate on a subset.")] = None,
    allow_pickle: Annotated[
        bool, typer.Option(help="Also read pickle files (weights_only=True).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Test accuracy of a model file on a dataset's test split."""
    loaded = load_model(model_path, allow_pickle=allow_pickle)
    ds = create_dataset(dataset, data_dir=data_dir, test_limit=test_limit)
    spec = loaded.info.spec
    if spec.input_shape != ds.input_shape or spec.num_classes != ds.num_classes:
        raise ConfigError(
            f"{model_path} takes input {spec.input_shape} with {spec.num_classes} classes but "
            f"{dataset} has {ds.input_shape} with {ds.num_classes}",
            fix="evaluate on the dataset (and options) the model was trained on",
        )
    acc = accuracy_on(loaded.model, ds.test)
    result = {
        "model": str(model_path),
        "dataset": dataset,
        "n_test": len(ds.test),
        "test_accuracy": acc,
    }
    if as_json:
        print_json(result)
    else:
        console.print(
            f"test accuracy of {model_path} on {dataset}: [bold]{acc:.4f}[/] "
            f"({len(ds.test)} examples)"
        )


def register(app: typer.Typer) -> None:
    """Adds the commands to ``app``."""
    app.command("datasets")(datasets)
    app.command("models")(models)
    app.command("eval")(eval_)
