"""DP-SGD against capacity abuse (trusted trainer, poisoned data) on digits.

Usage:
    python bench/dp_capacity.py --noise 0.5,1,2 --ratio 0.5

For each noise multiplier, trains an honest model and a capacity-abuse model (the
synthetic inputs are in the training data; the trainer is DP-SGD) and reports epsilon,
test accuracy, the share of synthetic labels learned and the MAPE of the images the key
reads back. The first row of each kind is plain training (no DP).
"""

from __future__ import annotations

import argparse

from common import markdown_table, save_record
from covertml.attacks import LocalOracle, create_attack, decode_capacity
from covertml.attacks.score import score_recovery
from covertml.data import create_dataset
from covertml.defenses.dp import DPSGD
from covertml.models import create_model_for
from covertml.training import Trainer, recipe, seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", default="0.5,1,2")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--clip", type=float, default=1.0)
    args = parser.parse_args()
    ds = create_dataset("digits")
    cfg = recipe("digits", epochs=args.epochs)
    rows, records = [], []
    for noise in [None, *(float(v) for v in args.noise.split(","))]:
        record: dict[str, object] = {"noise_multiplier": noise}
        for kind in ("honest", "capacity"):
            dp = None if noise is None else DPSGD(noise_multiplier=noise, max_grad_norm=args.clip)
            seed_everything(cfg.seed)
            model = create_model_for(ds)
            if kind == "honest":
                result = Trainer(cfg, privacy=dp).fit(model, ds.train, test_data=ds.test)
            else:
                plan = create_attack("capacity", ratio=args.ratio).plan(model, ds, seed=0)
                trainer = plan.trainer(cfg)
                trainer.privacy = dp
                result = trainer.fit(model, ds.train, test_data=ds.test)
                scores = score_recovery(plan.secret, decode_capacity(LocalOracle(model), plan.key))
                record["mape"] = scores.mape
                record["synthetic_acc"] = result.history[-1].extra.get("synthetic_acc")
            record[f"{kind}_accuracy"] = result.test_accuracy
            if dp is not None:
                record["epsilon"] = dp.spent()["epsilon"]
            print(kind, record, flush=True)
        records.append(record)
        rows.append(
            [
                "none" if noise is None else f"{noise:g}",
                "inf" if noise is None else f"{record['epsilon']:.2f}",
                f"{100 * record['honest_accuracy']:.2f}%",
                f"{100 * record['capacity_accuracy']:.2f}%",
                f"{100 * record['synthetic_acc']:.1f}%",
                f"{record['mape']:.2f}",
            ]
        )
    save_record("dp-capacity", {"ratio": args.ratio, "clip": args.clip, "rows": records})
    header = [
        "noise multiplier",
        "epsilon (delta 1e-5)",
        "honest acc",
        "attacked acc",
        "labels learned",
        "MAPE",
    ]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
