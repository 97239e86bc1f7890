"""Shared pieces of the command-line interface: console, options and error handling."""

from __future__ import annotations

from typing import Annotated

import typer

from covertml.cli.console import (
    AmpOpt,
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    console,
    err_console,
    parse_kv,
    print_json,
    setup_logging,
)
from covertml.data.registry import DATASETS, list_datasets
from covertml.models.registry import list_models

__all__ = [
    "AmpOpt",
    "DataDirOpt",
    "DeviceOpt",
    "DatasetOpt",
    "JsonOpt",
    "attack_help",
    "console",
    "default_model",
    "err_console",
    "model_help",
    "parse_kv",
    "print_json",
    "setup_logging",
]

DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        help="Dataset: " + ", ".join(list_datasets()) + ".",
    ),
]


def model_help() -> str:
    """Help text listing the registered models."""
    return "Model (default: the dataset's recipe): " + ", ".join(list_models()) + "."


def attack_help() -> str:
    """Help text listing the registered attacks."""
    from covertml.attacks import list_attacks

    return "Train maliciously with this attack: " + ", ".join(list_attacks()) + "."


def default_model(dataset: str) -> str:
    """The registry's default model for ``dataset``."""
    return str(DATASETS.get(dataset.partition(":")[0]).meta["default_model"])
