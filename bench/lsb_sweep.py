"""LSB encoding: test accuracy vs low bits b, capacity, exact recovery; compression choice.

Usage:
    python bench/lsb_sweep.py --dataset digits
    python bench/lsb_sweep.py --dataset cifar10 --data-dir ../shared/data \
        --model-file bench/out/models/cifar10-resnet20/model.safetensors
    python bench/lsb_sweep.py --dataset 20news --data-dir ../shared/data \
        --model-file bench/out/models/20news-logreg/model.safetensors

For each b the honest model is reloaded, the largest secret that fits (lzma) is written
into the low b bits of its weight tensors, and the model is evaluated and decoded.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import markdown_table, save_record
from covertml.attacks import LSBAttack, decode_secret, secret_from_dataset
from covertml.attacks.lsb import serialize
from covertml.attacks.payload import COMPRESSIONS, compress
from covertml.data import create_dataset
from covertml.models import create_model_for, load_model
from covertml.training import Trainer, accuracy_on, recipe, seed_everything

BITS = [8, 12, 16, 18, 20, 22, 24, 26]


def compression_table(ds, n: int) -> list[list[str]]:
    secret = secret_from_dataset(ds, max_items=n)
    raw = serialize(secret)
    rows = []
    for method in COMPRESSIONS:
        if method == "png-gzip" and secret.kind != "image":
            continue
        t0 = time.perf_counter()
        size = len(compress(raw, method, image_shape=secret.image_shape))
        rows.append(
            [method, f"{size:,}", f"{len(raw) / size:.2f}x", f"{time.perf_counter() - t0:.2f} s"]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model-file", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--bits", default=",".join(map(str, BITS)))
    parser.add_argument("--compression", default="lzma")
    args = parser.parse_args()
    ds = create_dataset(args.dataset, data_dir=args.data_dir)
    if args.model_file:
        make = lambda: load_model(args.model_file).model  # noqa: E731
    else:
        seed_everything(0)
        base = create_model_for(ds)
        Trainer(recipe(args.dataset)).fit(base, ds.train)
        state = {k: v.clone() for k, v in base.state_dict().items()}

        def make():
            seed_everything(0)
            m = create_model_for(ds)
            m.load_state_dict(state)
            return m.eval()

    honest = accuracy_on(make(), ds.test)
    n_comp = min(500, len(ds.train))
    comp_rows = compression_table(ds, n_comp)
    print(f"compression of the first {n_comp} training items:")
    print(markdown_table(["method", "bytes", "ratio", "time"], comp_rows))
    rows, records, best = [], [], None
    for bits in [int(b) for b in args.bits.split(",")]:
        model = make()
        attack = LSBAttack(bits=bits, compression=args.compression)
        plan = attack.plan(model, ds)
        plan.post_steps[0](model)
        acc = accuracy_on(model, ds.test)
        recovered = decode_secret(model, plan.key)
        exact = bool(np.array_equal(recovered.values, plan.secret.values))
        payload = len(attack._encode(plan.secret))
        delta = 100 * (acc - honest)
        if delta >= -0.5:
            best = bits
        rec = {
            "bits": bits,
            "accuracy": acc,
            "delta_points": delta,
            "items": plan.secret.count,
            "payload_bytes": payload,
            "exact": exact,
        }
        records.append(rec)
        rows.append(
            [
                bits,
                f"{100 * acc:.2f}%",
                f"{delta:+.2f}",
                f"{plan.secret.count:,}",
                f"{payload:,}",
                "yes (MAPE 0)" if exact else "NO",
            ]
        )
        print(rows[-1], flush=True)
    save_record(
        f"lsb-sweep-{args.dataset}",
        {
            "honest_accuracy": honest,
            "rows": records,
            "largest_bits_within_half_point": best,
            "compression": comp_rows,
        },
    )
    print(f"honest accuracy {100 * honest:.2f}%")
    print(
        markdown_table(
            ["b", "test acc", "delta (pts)", "items carried", "payload bytes", "exact"], rows
        )
    )
    print(f"largest b with accuracy change >= -0.5 points: {best}")


if __name__ == "__main__":
    main()
