"""Per-epoch training time of ResNet-20 and ResNet-32 on the full CIFAR-10 training set.

Usage:
    python bench/cifar_epoch_time.py --data-dir ../shared/data [--epochs 1]

One full epoch (50,000 images, batch 128, SGD + flip/crop, as the paper's schedule) per
model, in the same process, and the ResNet-32 / ResNet-20 ratio.
"""

from __future__ import annotations

import argparse

from common import markdown_table, save_record
from covertml.data import create_dataset
from covertml.models import create_model_for
from covertml.training import Trainer, recipe, seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=None)
    args = parser.parse_args()
    ds = create_dataset("cifar10", data_dir=args.data_dir, train_limit=args.train_limit)
    cfg = recipe("cifar10", epochs=args.epochs)
    times: dict[str, float] = {}
    rows = []
    for name in ("resnet20", "resnet32"):
        seed_everything(0)
        model = create_model_for(ds, name)
        result = Trainer(cfg).fit(model, ds.train)
        per_epoch = sum(e.seconds for e in result.history) / len(result.history)
        times[name] = per_epoch
        params = sum(p.numel() for p in model.parameters())
        rows.append([name, f"{params:,}", f"{len(ds.train):,}", f"{per_epoch:.1f} s"])
        print(rows[-1], flush=True)
    ratio = times["resnet32"] / times["resnet20"]
    save_record(
        "cifar-epoch-time",
        {"seconds_per_epoch": times, "ratio_32_over_20": ratio, "n_train": len(ds.train)},
    )
    print(markdown_table(["model", "params", "images/epoch", "time per epoch"], rows))
    print(f"ResNet-32 / ResNet-20 time ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
