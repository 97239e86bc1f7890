"""Helpers shared by the benchmark scripts: output folder, JSON records, tables."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

OUT = Path(__file__).resolve().parent / "out"


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def save_record(name: str, record: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({**record, "environment": environment()}, indent=2) + "\n")
    return path


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def add_data_args(parser: Any) -> None:
    """The dataset options every training benchmark takes."""
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--opt", action="append", default=[], help="KEY=VALUE attack option")
    parser.add_argument("--optimizer", default=None, help="sgd or adam (default: recipe)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--schedule", default=None, help="constant, step or cosine")


def recipe_overrides(args: Any) -> dict[str, Any]:
    """The training-recipe options given on the command line (``None`` = recipe's own)."""
    return {
        "optimizer": args.optimizer,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
    }


def recipe_tag(args: Any) -> str:
    """A file-name suffix naming the recipe overrides in effect."""
    return "".join(f"-{k}{v}" for k, v in recipe_overrides(args).items() if v is not None)


def load_dataset(args: Any) -> Any:
    """The dataset ``add_data_args`` options describe."""
    from covertml.data import create_dataset

    return create_dataset(
        args.dataset,
        data_dir=args.data_dir,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
    )


def attack_opts(args: Any) -> dict[str, Any]:
    """``--opt KEY=VALUE`` pairs, values parsed as JSON."""
    return {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.opt)}
