"""Time per training step with each malicious regularizer vs an honest step, same process.

Usage:
    python bench/reg_overhead.py [--steps 30]

Models: the digits MLP (batch 32), ResNet-20 on 32x32x3 (batch 128) and the 20 Newsgroups
logistic regression (130,107 features x 20 classes, batch 64 of sparse rows). The secret
fills the carriers (as many items as fit). Reports the ratio to the honest step.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import torch

from common import markdown_table, save_record
from covertml.attacks import CarrierMap, CorrelationLoss, SignLoss
from covertml.models import create_model
from covertml.training import to_model_input


def step_time(model, xb, yb, terms, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss = loss_fn(model(xb), yb)
        for term in terms:
            loss = loss + term(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
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
        honest = step_time(model, xb, yb, [], args.steps)
        corr = step_time(model, xb, yb, [CorrelationLoss(cmap, target, lam=1.0)], args.steps)
        sign = step_time(model, xb, yb, [SignLoss(cmap, bits, lam=10.0)], args.steps)
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
    save_record("reg-overhead", {"rows": records})
    print(
        markdown_table(["model", "carriers", "honest step", "correlation step", "sign step"], rows)
    )


if __name__ == "__main__":
    main()
