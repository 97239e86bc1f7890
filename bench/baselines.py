"""Honest baselines on this machine: accuracy and wall time per dataset and model.

Usage:
    python bench/baselines.py --data-dir ../shared/data [--only cifar10,20news] [--epochs N]

Each configuration trains with the dataset's recipe (``covertml.training.recipes``) plus the
overrides below, writes ``bench/out/baselines-<key>.json`` and the model file, and prints a
markdown row with the paper's reported figure beside ours.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import OUT, markdown_table, save_record
from covertml.data import create_dataset
from covertml.training import recipe
from covertml.training.pipeline import train_and_save

# key: (dataset, model, recipe overrides, paper's figure [approximate unless noted])
CONFIGS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "digits-mlp": ("digits", "mlp", {}, "n/a (not in the paper)"),
    "cifar10-resnet20": ("cifar10", "resnet20", {"epochs": 10}, "≈92.9% (ResNet, 100 epochs)"),
    "lfw-gender-cnn": ("lfw-gender", "face-cnn", {}, "≈87.8% (CNN)"),
    "20news-logreg": ("20news", "logreg", {}, "≈80% (linear, TF-IDF 130,107)"),
    "20news-svm": ("20news", "linear-svm", {}, "≈80% (linear, TF-IDF 130,107)"),
    "imdb-logreg": ("imdb", "logreg", {}, "≈90% (linear)"),
    "imdb-svm": ("imdb", "linear-svm", {}, "≈90% (linear)"),
}


def run(key: str, data_dir: str | None, epochs: int | None) -> list[Any]:
    dataset, model, overrides, paper = CONFIGS[key]
    t0 = time.perf_counter()
    ds = create_dataset(dataset, data_dir=data_dir)
    load_s = time.perf_counter() - t0
    cfg = recipe(dataset, **{**overrides, **({"epochs": epochs} if epochs else {})})
    trained = train_and_save(ds, OUT / "models" / key, model_name=model, config=cfg, overwrite=True)
    epoch_s = [e.seconds for e in trained.result.history]
    record = {
        "key": key,
        "dataset": dataset,
        "model": model,
        "n_train": len(ds.train),
        "n_test": len(ds.test),
        "n_parameters": trained.metrics["n_parameters"],
        "config": cfg.to_dict(),
        "test_accuracy": trained.result.test_accuracy,
        "train_seconds": trained.result.seconds,
        "seconds_per_epoch": sum(epoch_s) / len(epoch_s),
        "load_seconds": load_s,
        "paper": paper,
    }
    save_record(f"baselines-{key}", record)
    return [
        dataset,
        model,
        f"{record['n_parameters']:,}",
        f"{len(ds.train):,}",
        f"{cfg.epochs} ({cfg.optimizer}, lr {cfg.lr})",
        f"{100 * (trained.result.test_accuracy or 0):.2f}%",
        f"{record['train_seconds']:.0f} s ({record['seconds_per_epoch']:.1f} s/epoch)",
        paper,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--only", default=",".join(CONFIGS))
    parser.add_argument("--epochs", type=int, default=None, help="override every config")
    args = parser.parse_args()
    rows = []
    for key in args.only.split(","):
        rows.append(run(key, args.data_dir, args.epochs))
        print(rows[-1], flush=True)
    header = ["dataset", "model", "params", "n train", "epochs", "test acc", "wall time", "paper"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
