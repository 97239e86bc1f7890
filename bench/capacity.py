"""Capacity abuse: accuracy, delta vs honest, and recovery per m/n (or per number of items).

Usage:
    python bench/capacity.py --dataset digits --ratios 0.5,1,2,4
    python bench/capacity.py --dataset digits --ratios 1 --generator sparse
    python bench/capacity.py --dataset cifar10 --data-dir ../shared/data --train-limit 8000 \\
        --test-limit 2000 --epochs 20 --optimizer adam --lr 1e-3 --weight-decay 0 \\
        --schedule cosine --ratios 0.5,1,2
    python bench/capacity.py --dataset lfw-gender --data-dir ../shared/data --n-secrets 1,2
    python bench/capacity.py --dataset 20news --data-dir ../shared/data --ratios 0.5,1

The honest baseline uses the same seed, data and schedule. Each attacked model is decoded
by asking it for labels (a local label oracle; bench/http_throughput.py measures the HTTP
path), and the recovery is scored against the true training items, with the quantization
floor (every bucket right, decoded to its centre) beside the MAPE.
"""

from __future__ import annotations

import argparse

from common import (
    add_data_args,
    attack_opts,
    load_dataset,
    markdown_table,
    recipe_overrides,
    recipe_tag,
    save_record,
)
from covertml.attacks import LocalOracle, create_attack, decode_capacity
from covertml.attacks.extract import quantization_scores
from covertml.attacks.score import score_recovery
from covertml.models import create_model_for
from covertml.training import Trainer, recipe, seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--ratios", default=None, help="m/n values, comma-separated")
    parser.add_argument("--n-secrets", default=None, help="numbers of items, comma-separated")
    parser.add_argument("--bits-per-pixel", type=int, default=4)
    parser.add_argument("--generator", default="uniform")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ds = load_dataset(args)
    cfg = recipe(args.dataset, epochs=args.epochs, seed=args.seed, **recipe_overrides(args))
    seed_everything(cfg.seed)
    honest_model = create_model_for(ds, args.model)
    honest = Trainer(cfg).fit(honest_model, ds.train, test_data=ds.test)
    base = honest.test_accuracy or 0.0
    print(f"honest: {100 * base:.2f}% ({honest.seconds:.0f} s)", flush=True)
    if args.n_secrets:
        settings = [("n", int(v)) for v in args.n_secrets.split(",")]
    else:
        settings = [("ratio", float(v)) for v in (args.ratios or "1").split(",")]
    rows, records = [], []
    for kind, value in settings:
        seed_everything(cfg.seed)
        model = create_model_for(ds, args.model)
        options: dict[str, object] = {
            "bits_per_pixel": args.bits_per_pixel,
            "generator": args.generator,
            **attack_opts(args),
        }
        if kind == "ratio":
            options["ratio"] = value
        attack = create_attack("capacity", **options)
        n_secrets = int(value) if kind == "n" else None
        plan = attack.plan(model, ds, n_secrets=n_secrets, seed=args.seed)
        result = plan.trainer(cfg).fit(model, ds.train, test_data=ds.test)
        oracle = LocalOracle(model)
        decoded = decode_capacity(oracle, plan.key)
        scores = score_recovery(plan.secret, decoded)
        m = int(plan.key.settings["m"])
        acc = result.test_accuracy or 0.0
        rec = {
            "setting": kind,
            "value": value,
            "m": m,
            "m_over_n": m / len(ds.train),
            "accuracy": acc,
            "delta_points": 100 * (acc - base),
            "synthetic_accuracy": result.history[-1].extra.get("synthetic_acc"),
            "queries": oracle.queries,
            "seconds": result.seconds,
            **scores.to_dict(),
        }
        if plan.secret.kind == "image":
            q = quantization_scores(plan.key, plan.secret, decoded)
            rec["floor_mape"] = q["quantization_floor_mape"]
            rec["exact_buckets"] = q["exact_buckets"]
            quality = [
                f"{scores.mape:.2f}",
                f"{rec['floor_mape']:.2f}",
                f"{100 * rec['exact_buckets']:.2f}%",
            ]
        else:
            quality = [f"P {scores.word_precision:.3f}", f"R {scores.word_recall:.3f}", ""]
        records.append(rec)
        rows.append(
            [
                f"{m:,}",
                f"{m / len(ds.train):.2f}",
                f"{100 * acc:.2f}%",
                f"{100 * (acc - base):+.2f}",
                scores.items,
                *quality,
                f"{100 * (rec['synthetic_accuracy'] or 0):.2f}%",
                f"{oracle.queries:,}",
                f"{result.seconds:.0f} s",
            ]
        )
        print(rows[-1], flush=True)
    name = f"capacity-{args.dataset}-{args.generator}-k{args.bits_per_pixel}"
    name += "".join(f"-{o}" for o in args.opt) + (f"-seed{args.seed}" if args.seed else "")
    name += recipe_tag(args)
    save_record(
        name,
        {
            "honest_accuracy": base,
            "config": cfg.to_dict(),
            "train_limit": args.train_limit,
            "n_train": len(ds.train),
            "rows": records,
        },
    )
    if ds.modality == "image":
        q = ["MAPE", "floor", "right buckets"]
    else:
        q = ["word precision", "word recall", ""]
    header = ["m", "m/n", "test acc", "delta (pts)", "items", *q, "synthetic acc", "queries"]
    print(f"honest baseline: {100 * base:.2f}% on {len(ds.train)} training items")
    print(markdown_table([*header, "time"], rows))


if __name__ == "__main__":
    main()
