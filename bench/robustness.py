"""Robustness matrix: every attack x every sanitizer -- accuracy kept, secret still there?

Usage:
    python bench/robustness.py --dataset digits
    python bench/robustness.py --dataset cifar10 --data-dir ../shared/data --train-limit 5000 \\
        --test-limit 2000 --epochs 20 --optimizer adam --lr 1e-3 --weight-decay 0 \\
        --schedule cosine

Trains an honest model and one model per attack (same seed and recipe), applies every
sanitizer to each, and records test accuracy and what the adversary still recovers with
the key: MAPE of the decoded images, or "destroyed" when the LSB payload no longer
decodes. A second table is the adaptive attacker: LSB with Reed-Solomon parity against
lsb-randomize of fewer bits than the payload uses.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

from common import (
    add_data_args,
    load_dataset,
    markdown_table,
    recipe_overrides,
    save_record,
)
from covertml.attacks import LocalOracle, create_attack, decode_capacity, decode_secret
from covertml.attacks.score import score_recovery
from covertml.defenses import create_sanitizer
from covertml.errors import CovertMLError
from covertml.models import create_model_for
from covertml.training import Trainer, accuracy_on, recipe, seed_everything

ATTACKS: dict[str, dict[str, Any]] = {
    "lsb": {"bits": 16},
    "correlation": {"lam": 3.0},
    "sign": {"lam": 10.0},
    "capacity": {},
}
SANITIZERS: list[tuple[str, dict[str, Any]]] = [
    ("none", {}),
    ("lsb-randomize", {"bits": 16}),
    ("lsb-zero", {"bits": 16}),
    ("fp16", {}),
    ("bf16", {}),
    ("int8", {"per": "tensor"}),
    ("int8", {"per": "channel"}),
    ("prune", {"percent": 20.0}),
    ("prune", {"percent": 50.0}),
    ("noise", {"sigma": 0.05}),
    ("noise", {"sigma": 0.2}),
    ("finetune", {"epochs": 2}),
]


def label(name: str, opts: dict[str, Any]) -> str:
    return name + "".join(f" {v}" for v in opts.values())


def with_lsb(honest, ds, seed: int, options: dict[str, Any]):
    """A copy of the honest model with an LSB payload written into it (the attack's step)."""
    model = copy.deepcopy(honest)
    plan = create_attack("lsb", **options).plan(model, ds, seed=seed)
    for step in plan.post_steps:
        step(model)
    return model.eval(), plan


def recover(model, plan) -> dict[str, Any]:
    try:
        if plan.key.attack == "capacity":
            secret = decode_capacity(LocalOracle(model), plan.key)
        else:
            secret = decode_secret(model, plan.key)
    except CovertMLError as exc:
        return {"recovered": False, "why": str(exc).split(";")[0][:80]}
    s = score_recovery(plan.secret, secret)
    return {"recovered": True, "mape": s.mape, "bit_error_rate": s.bit_error_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--capacity-ratio", type=float, default=0.5)
    args = parser.parse_args()
    ds = load_dataset(args)
    cfg = recipe(args.dataset, epochs=args.epochs, **recipe_overrides(args))
    ATTACKS["capacity"] = {"ratio": args.capacity_ratio}
    trained: dict[str, tuple[Any, Any]] = {}
    for name in ["honest", *ATTACKS]:
        t = time.time()
        seed_everything(cfg.seed)
        model = create_model_for(ds, args.model)
        plan = None
        if name == "honest":
            Trainer(cfg).fit(model, ds.train)
        elif name == "lsb":  # trains honestly, then writes the low bits: no need to retrain
            model, plan = with_lsb(trained["honest"][0], ds, cfg.seed, ATTACKS["lsb"])
        else:
            plan = create_attack(name, **ATTACKS[name]).plan(model, ds, seed=cfg.seed)
            plan.trainer(cfg).fit(model, ds.train)
        trained[name] = (model.eval(), plan)
        print(f"trained {name} ({time.time() - t:.0f} s)", flush=True)
    cells: list[dict[str, Any]] = []
    table = []
    for name, (model, plan) in trained.items():
        row = [name]
        for san, opts in SANITIZERS:
            if san == "none":
                clean = model
            else:
                clean = create_sanitizer(san, **opts).sanitize(model, seed=1, dataset=ds)
            acc = accuracy_on(clean, ds.test)
            rec = recover(clean, plan) if plan is not None else {}
            cells.append({"attack": name, "sanitizer": label(san, opts), "accuracy": acc, **rec})
            if plan is None:
                row.append(f"{100 * acc:.1f}%")
            elif rec["recovered"]:
                row.append(f"{100 * acc:.1f}% / {rec['mape']:.1f}")
            else:
                row.append(f"{100 * acc:.1f}% / gone")
        table.append(row)
        print(row, flush=True)
    adaptive = []
    for ecc in (0, 32, 128, 192):
        m, plan = with_lsb(trained["honest"][0], ds, cfg.seed, {"bits": 16, "ecc_symbols": ecc})
        row = [f"lsb 16, RS {ecc}/255"]
        for bits in (1, 2, 4, 8):
            clean = create_sanitizer("lsb-randomize", bits=bits).sanitize(m, seed=1)
            rec = recover(clean, plan)
            cells.append({"attack": f"lsb+rs{ecc}", "sanitizer": f"lsb-randomize {bits}", **rec})
            row.append(f"{rec['mape']:.1f}" if rec["recovered"] else "gone")
        adaptive.append(row)
        print(row, flush=True)
    save_record(
        f"robustness-{args.dataset}",
        {"config": cfg.to_dict(), "n_train": len(ds.train), "cells": cells},
    )
    print("cells: test accuracy / MAPE of what the key still recovers ('gone': no payload)")
    print(markdown_table(["model", *(label(s, o) for s, o in SANITIZERS)], table))
    print("adaptive attacker: MAPE after lsb-randomize of b bits")
    print(markdown_table(["attack", "b=1", "b=2", "b=4", "b=8"], adaptive))


if __name__ == "__main__":
    main()
