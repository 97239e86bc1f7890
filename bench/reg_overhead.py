"""Time per training step with each malicious regularizer vs an honest step, same process.

Usage:
    python bench/reg_overhead.py [--steps 30] [--epochs 3]

Models: the digits MLP (batch 32), ResNet-20 on 32x32x3 (batch 128) and the 20 Newsgroups
logistic regression (130,107 features x 20 classes, batch 64 of sparse rows). The secret
fills the carriers (as many items as fit). Honest, correlation and sign steps are
interleaved (one of each per round, in rotating order) so that drift in machine load hits
all three alike; reports medians and the ratio to the honest step. A last row times whole
epochs of the reference Trainer on digits (data loading included), where a real attack runs.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import scipy.sparse as sp
import torch

from common import markdown_table, save_record
from covertml.attacks import CarrierMap, CorrelationLoss, SignLoss
from covertml.models import create_model
from covertml.training import to_model_input


def interleaved_steps(model, xb, yb, terms_by_config: dict, steps: int) -> dict[str, float]:
    """Median step time per configuration; configurations alternate step by step."""
    loss_fn = torch.nn.CrossEntropyLoss()
    models = {name: copy.deepcopy(model) for name in terms_by_config}
    opts = {name: torch.optim.Adam(m.parameters(), lr=1e-3) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in terms_by_config}
    names = list(terms_by_config)
    for i in range(steps + 3):
        for j in range(len(names)):  # rotate the order so no configuration always goes first
            name = names[(i + j) % len(names)]
            terms = terms_by_config[name]
            m = models[name]
            t0 = time.perf_counter()
            loss = loss_fn(m(xb), yb)
            for term in terms:
                loss = loss + term(m)
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            if i >= 3:
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def trainer_epochs(epochs: int) -> dict[str, float]:
    """Seconds per epoch of the reference Trainer on digits, honest and with each attack."""
    from covertml.attacks import create_attack
    from covertml.data import create_dataset
    from covertml.models import create_model_for
    from covertml.training import Trainer, recipe

    data = create_dataset("digits")
    config = recipe("digits", epochs=epochs)
    out: dict[str, list[float]] = {"honest": [], "correlation": [], "sign": []}
    for _ in range(3):
        for name in out:
            model = create_model_for(data, "mlp")
            if name == "honest":
                trainer = Trainer(config)
            else:
                plan = create_attack(name).plan(model, data)
                trainer = plan.trainer(config)
            result = trainer.fit(model, data.train)
            out[name].append(float(np.median([e.seconds for e in result.history])))
    return {name: float(np.median(v)) for name, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = {
        "digits MLP (b=32)": (
            create_model("mlp", input_shape=(1, 8, 8), num_classes=10),
            torch.rand(32, 1, 8, 8),
            10,
        ),
        "ResNet-20 (b=128)": (
            create_model("resnet20", input_shape=(3, 32, 32), num_classes=10),
            torch.rand(128, 3, 32, 32),
            10,
        ),
    }
    x_text = sp.random(64, 130_107, density=0.001, format="csr", random_state=0, dtype=np.float32)
    cases["20news logreg (b=64)"] = (
        create_model("logreg", input_shape=(130_107,), num_classes=20),
        to_model_input(x_text),
        20,
    )
    rows, records = [], []
    for name, (model, xb, classes) in cases.items():
        yb = torch.randint(0, classes, (xb.shape[0],))
        cmap = CarrierMap.from_model(model)
        target = rng.integers(0, 256, cmap.size).astype(float)
        bits = rng.integers(0, 2, cmap.size)
        configs = {
            "honest": [],
            "correlation": [CorrelationLoss(cmap, target, lam=1.0)],
            "sign": [SignLoss(cmap, bits, lam=10.0)],
        }
        t = interleaved_steps(model, xb, yb, configs, args.steps)
        honest, corr, sign = t["honest"], t["correlation"], t["sign"]
        records.append(
            {
                "model": name,
                "carriers": cmap.size,
                "honest_s": honest,
                "correlation_s": corr,
                "sign_s": sign,
            }
        )
        rows.append(
            [
                name,
                f"{cmap.size:,}",
                f"{1000 * honest:.2f} ms",
                f"{1000 * corr:.2f} ms ({corr / honest:.2f}x)",
                f"{1000 * sign:.2f} ms ({sign / honest:.2f}x)",
            ]
        )
        print(rows[-1], flush=True)
    t = trainer_epochs(args.epochs)
    honest, corr, sign = t["honest"], t["correlation"], t["sign"]
    records.append({"model": "digits MLP, Trainer epoch", **t})
    rows.append(
        [
            "digits MLP, Trainer epoch (45 steps + loading)",
            "50,432",
            f"{1000 * honest:.1f} ms",
            f"{1000 * corr:.1f} ms ({corr / honest:.2f}x)",
            f"{1000 * sign:.1f} ms ({sign / honest:.2f}x)",
        ]
    )
    save_record("reg-overhead", {"rows": records})
    print(
        markdown_table(["model", "carriers", "honest step", "correlation step", "sign step"], rows)
    )


if __name__ == "__main__":
    main()
