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
import json
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
    ("capacity", {"ratio": 1.0, "learn_to": 0.0, "ecc": 0}, "m/n 1, no ECC, configured epochs"),
    ("capacity", {}, "defaults"),
]


def grey_cifar(data_dir: str, out: Path, fmt: str = "npz") -> str:
    """CIFAR-10 as 28x28 grey images (6,000 train, 2,000 test): an npz file or a folder tree."""
    ds = create_dataset("cifar10", data_dir=data_dir, train_limit=6000, test_limit=2000)

    def grey(x: np.ndarray) -> np.ndarray:
        return np.stack(
            [np.asarray(Image.fromarray(im).convert("L").resize((28, 28))) for im in x]
        )[..., None]

    if fmt == "npz":
        path = out / "grey_cifar28.npz"
        np.savez(path, x_train=grey(ds.train.x), y_train=ds.train.y,
                 x_test=grey(ds.test.x), y_test=ds.test.y)  # fmt: skip
        return f"npz:{path}"
    root = out / "grey_cifar28"
    for split, data in (("train", ds.train), ("test", ds.test)):
        for i, (im, label) in enumerate(zip(grey(data.x), data.y, strict=True)):
            folder = root / split / ds.classes[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im[..., 0]).save(folder / f"{i:05d}.png")
    return f"imagefolder:{root}"


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


def literal(text: str) -> Any:
    """A ``--set`` value as JSON (numbers, booleans) or else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def summarize(values: list[float]) -> str:
    mean = float(np.mean(values))
    return f"{mean:+.1f}" if len(values) == 1 else f"{mean:+.1f} ± {float(np.std(values)):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=None, help="a registry name (default: grey CIFAR)")
    parser.add_argument("--data-dir", default=os.environ.get("COVERTML_DATA"))
    parser.add_argument(
        "--format",
        choices=("npz", "imagefolder"),
        default="npz",
        help="how the grey CIFAR set is written (the loader it goes through)",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1, averaged")
    parser.add_argument(
        "--only", default=None, help="comma-separated attacks (or attack:setting) to run"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option added to every attack run (e.g. layout=flat)",
    )
    args = parser.parse_args()
    extra = {k: literal(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    only = None if args.only is None else args.only.split(",")
    chosen = [r for r in RUNS if only is None or r[0] in only or f"{r[0]}:{r[2]}" in only]
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset is None:
            if not args.data_dir:
                parser.error("the grey CIFAR set needs --data-dir (or COVERTML_DATA)")
            name = grey_cifar(args.data_dir, Path(tmp), args.format)
            label = f"grey CIFAR-10 28x28 (unseen, {args.format}:)"
        else:
            name, label = args.dataset, args.dataset
        ds = create_dataset(name, data_dir=args.data_dir)
        results: dict[str, Any] = {}
        for seed in range(args.seeds):
            if args.dataset in (None, "cifar10", "lfw-gender"):
                cfg = TrainConfig(epochs=args.epochs, seed=seed)
            else:
                cfg = dataclasses.replace(recipe(args.dataset), seed=seed)
            results.setdefault("honest", []).append(run(ds, cfg, args.model, None, {}))
            for attack, opts, what in chosen:
                r = run(ds, cfg, args.model, attack, {**opts, **extra})
                r["delta"] = 100 * (r["accuracy"] - results["honest"][-1]["accuracy"])
                results.setdefault(f"{attack} {what}", []).append(r)
                print(seed, attack, what, f"{r['delta']:+.1f}", f"MAPE {r['mape']:.2f}", flush=True)
    rows = []
    for attack, opts, what in chosen:
        rs = results[f"{attack} {what}"]
        lams = [r["lam_schedule"][-1] for r in rs if r["lam_schedule"]]
        lam = float(np.mean(lams)) if lams else opts.get("lam")
        floor = [r["mape_floor"] for r in rs if r["mape_floor"] is not None]
        learned = [r["synthetic_accuracy"] for r in rs if r["synthetic_accuracy"] is not None]
        rows.append([attack, what,
                     f"{100 * np.mean([r['accuracy'] for r in rs]):.1f} "
                     f"({summarize([r['delta'] for r in rs])})",
                     rs[0]["items"],
                     f"{np.mean([r['mape'] for r in rs]):.2f}"
                     + (f" (floor {np.mean(floor):.2f})" if floor else ""),
                     "" if lam is None else f"{lam:.3g}",
                     f"{np.mean(learned):.2%} in {rs[0]['epochs_trained']} ep" if learned else "",
                     f"{np.mean([r['seconds'] for r in rs]):.0f} s"])  # fmt: skip
    honest = np.mean([r["accuracy"] for r in results["honest"]])
    print(f"\n{label}, {args.model}, {cfg.epochs} epochs, {args.seeds} seed(s); "
          f"honest {100 * honest:.1f}%")  # fmt: skip
    header = ["attack", "setting", "test acc % (δ)", "items", "MAPE", "final λ",
              "synthetic labels learned", "time"]  # fmt: skip
    print(markdown_table(header, rows))
    record = {"dataset": label, "model": args.model, "epochs": cfg.epochs, "seeds": args.seeds,
              "environment": environment(), "results": results}  # fmt: skip
    print(f"record: {save_record('auto_strength', record)}")


if __name__ == "__main__":
    main()
