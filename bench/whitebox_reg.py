"""Correlated value and sign encoding: accuracy, delta vs honest, and recovery per lambda.

Usage:
    python bench/whitebox_reg.py --dataset digits --attack correlation --lams 0.1,1,3,5
    python bench/whitebox_reg.py --dataset digits --attack sign --lams 10,50
    python bench/whitebox_reg.py --dataset cifar10 --data-dir ../shared/data \\
        --attack correlation --lams 0.1,1,3 --epochs 8 --train-limit 10000
    python bench/whitebox_reg.py --dataset 20news --data-dir ../shared/data --attack sign \\
        --lams 1000

The honest baseline uses the same seed, data and schedule. Options after --opt are passed
to the attack (e.g. --opt clip=2).
"""

from __future__ import annotations

import argparse

from common import (
    add_data_args,
    attack_opts,
    load_dataset,
    markdown_table,
    recipe_overrides,
    save_record,
)
from covertml.attacks import create_attack, decode_secret
from covertml.attacks.score import score_recovery
from covertml.models import create_model_for
from covertml.training import Trainer, recipe, seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--attack", default="correlation")
    parser.add_argument("--lams", default="0.1,1,3")
    parser.add_argument("--n-secrets", type=int, default=None)
    args = parser.parse_args()
    ds = load_dataset(args)
    cfg = recipe(args.dataset, epochs=args.epochs, **recipe_overrides(args))
    extra = attack_opts(args)

    seed_everything(cfg.seed)
    honest_model = create_model_for(ds, args.model)
    honest = Trainer(cfg).fit(honest_model, ds.train, test_data=ds.test)
    base = honest.test_accuracy or 0.0
    print(f"honest: {100 * base:.2f}% ({honest.seconds:.0f} s)", flush=True)
    rows, records = [], []
    for lam in [float(x) for x in args.lams.split(",")]:
        seed_everything(cfg.seed)
        model = create_model_for(ds, args.model)
        plan = create_attack(args.attack, lam=lam, **extra).plan(
            model, ds, n_secrets=args.n_secrets
        )
        result = plan.trainer(cfg).fit(model, ds.train, test_data=ds.test)
        scores = score_recovery(plan.secret, decode_secret(model, plan.key))
        acc = result.test_accuracy or 0.0
        rec = {
            "lam": lam,
            "accuracy": acc,
            "delta_points": 100 * (acc - base),
            "seconds": result.seconds,
            **scores.to_dict(),
        }
        records.append(rec)
        if plan.secret.kind == "image":
            quality = [f"{scores.mape:.2f}", f"{scores.ssim:.3f}" if scores.ssim else "n/a"]
        else:
            quality = [f"P {scores.word_precision:.3f}", f"R {scores.word_recall:.3f}"]
        rows.append(
            [
                lam,
                f"{100 * acc:.2f}%",
                f"{100 * (acc - base):+.2f}",
                scores.items,
                f"{scores.symbols:,}",
                *quality,
                f"{100 * (1 - scores.bit_error_rate):.2f}%",
                f"{result.seconds:.0f} s",
            ]
        )
        print(rows[-1], flush=True)
    name = f"{args.attack}-{args.dataset}" + ("".join(f"-{o}" for o in args.opt))
    save_record(
        name,
        {
            "honest_accuracy": base,
            "config": cfg.to_dict(),
            "options": extra,
            "train_limit": args.train_limit,
            "rows": records,
        },
    )
    q = ["MAPE", "SSIM"] if ds.modality == "image" else ["word precision", "word recall"]
    header = ["lambda", "test acc", "delta (pts)", "items", "symbols", *q, "correct bits", "time"]
    print(f"honest baseline: {100 * base:.2f}%")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
