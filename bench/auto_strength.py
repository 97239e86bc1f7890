"""Fixed paper strengths against ``lam="auto"`` on an image set the tuning never saw.

Usage:
    python bench/auto_strength.py --data-dir ../shared/data            # grey CIFAR-10
    python bench/auto_strength.py --dataset digits                     # the tuning set

The unseen set is the one issue 15 describes: 28x28 grey images, 10 classes, 6,000
training and 2,000 test images (CIFAR-10 converted to grey and resized, written to an
``npz:`` file), the ``mlp`` model, 10 epochs of Adam. Every model starts from the same
seed; the honest model of that seed is the reference for the accuracy change (delta).
Recovery is scored against the true training images (MAPE: mean absolute pixel error,
0-255).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common import environment, markdown_table, save_record
from covertml.attacks import create_attack, decode_secret
from covertml.attacks.labelcode import dequantize, quantize
from covertml.attacks.score import score_recovery
from covertml.data import create_dataset
from covertml.data.base import Dataset
from covertml.models import create_model_for
from covertml.training import TrainConfig, Trainer, recipe, seed_everything
from covertml.training.evaluate import accuracy_on

RUNS = [
    ("correlation", {"lam": 1.0, "clip": 0.0}, "paper λ 1"),
    ("correlation", {}, "auto"),
    ("sign", {"lam": 10.0}, "paper λ 10"),
    ("sign", {}, "auto"),
    ("capacity", {"ratio": 1.0, "learn_to": 0.0}, "m/n 1, configured epochs"),
    ("capacity", {}, "defaults"),
]


def grey_cifar(data_dir: str, out: Path) -> Path:
    """CIFAR-10 as 28x28 grey images (6,000 train, 2,000 test) in an npz file."""
    ds = create_dataset("cifar10", data_dir=data_dir, train_limit=6000, test_limit=2000)

    def grey(x: np.ndarray) -> np.ndarray:
        return np.stack(
            [np.asarray(Image.fromarray(im).convert("L").resize((28, 28))) for im in x]
        )[..., None]

    path = out / "grey_cifar28.npz"
    np.savez(path, x_train=grey(ds.train.x), y_train=ds.train.y,
             x_test=grey(ds.test.x), y_test=ds.test.y)  # fmt: skip
    return path


def run(ds: Dataset, cfg: TrainConfig, model_name: str | None, attack: str | None,
        opts: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    seed_everything(cfg.seed)
    model = create_model_for(ds, model_name)
    start = time.perf_counter()
    if attack is None:
        Trainer(cfg).fit(model, ds.train)
        return {"accuracy": accuracy_on(model, ds.test), "seconds": time.perf_counter() - start}
    plan = create_attack(attack, **opts).plan(model, ds, seed=cfg.seed)
    result = plan.trainer(cfg).fit(model, ds.train)
    scores = score_recovery(plan.secret, decode_secret(model, plan.key))
    lams = [e.extra.get("auto_lam") for e in result.history if "auto_lam" in e.extra]
    floor = None
    if attack == "capacity":  # what 4-bit buckets lose before any label error
        bits = int(plan.key.settings["bits_per_pixel"])
        values = plan.secret.values
        floor = float(np.abs(dequantize(quantize(values, bits), bits) - values).mean())
    return {
        "accuracy": accuracy_on(model, ds.test),
        "items": plan.secret.count,
        "mape": scores.mape,
        "exact_symbols": scores.exact_symbols,
        "lam_schedule": lams,
        "epochs_trained": len(result.history),
        "mape_floor": floor,
        "synthetic_accuracy": result.history[-1].extra.get("synthetic_acc"),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=None, help="a registry name (default: grey CIFAR)")
    parser.add_argument("--data-dir", default=os.environ.get("COVERTML_DATA"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated attacks to run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option added to every attack run (e.g. layout=flat)",
    )
    args = parser.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.set)
    chosen = RUNS if args.only is None else [r for r in RUNS if r[0] in args.only.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset is None:
            if not args.data_dir:
                parser.error("the grey CIFAR set needs --data-dir (or COVERTML_DATA)")
            name = f"npz:{grey_cifar(args.data_dir, Path(tmp))}"
            label = "grey CIFAR-10 28x28 (unseen)"
        else:
            name, label = args.dataset, args.dataset
        ds = create_dataset(name, data_dir=args.data_dir)
        if args.dataset in (None, "cifar10", "lfw-gender"):
            cfg = TrainConfig(epochs=args.epochs, seed=args.seed)
        else:
            cfg = dataclasses.replace(recipe(args.dataset), seed=args.seed)
        honest = run(ds, cfg, args.model, None, {})
        rows, results = [], {"honest": honest}
        for attack, opts, what in chosen:
            r = run(ds, cfg, args.model, attack, {**opts, **extra})
            results[f"{attack} {what}"] = r
            delta = 100 * (r["accuracy"] - honest["accuracy"])
            lam = r["lam_schedule"][-1] if r["lam_schedule"] else opts.get("lam")
            learned = r["synthetic_accuracy"]
            rows.append([attack, what, f"{100 * r['accuracy']:.1f} ({delta:+.1f})", r["items"],
                         f"{r['mape']:.2f}" + ("" if r["mape_floor"] is None
                                              else f" (floor {r['mape_floor']:.2f})"),
                         "" if lam is None else f"{lam:.3g}",
                         "" if learned is None else f"{learned:.2%} in {r['epochs_trained']} ep",
                         f"{r['seconds']:.0f} s"])  # fmt: skip
            print(rows[-1], flush=True)
    print(f"\n{label}, {args.model}, {cfg.epochs} epochs; honest {100 * honest['accuracy']:.1f}%")
    header = ["attack", "setting", "test acc % (δ)", "items", "MAPE", "final λ",
              "synthetic labels learned", "time"]  # fmt: skip
    print(markdown_table(header, rows))
    record = {"dataset": label, "model": args.model, "epochs": cfg.epochs,
              "environment": environment(), "results": results}  # fmt: skip
    print(f"record: {save_record('auto_strength', record)}")


if __name__ == "__main__":
    main()
