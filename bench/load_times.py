"""First (decode) and cached load time of every dataset.

Usage:
    python bench/load_times.py --data-dir ../shared/data

The first load uses an empty temporary cache directory so it really decodes the archive;
the second load reads that cache. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import markdown_table, save_record
from covertml.data import create_dataset

DATASETS = ["digits", "cifar10", "lfw-gender", "lfw-identity", "20news", "imdb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    rows, record = [], {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["COVERTML_CACHE"] = cache
        for name in DATASETS:
            t0 = time.perf_counter()
            ds = create_dataset(name, data_dir=args.data_dir)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            create_dataset(name, data_dir=args.data_dir)
            cached = time.perf_counter() - t0
            record[name] = {"first_s": first, "cached_s": cached, "n": len(ds.train) + len(ds.test)}
            rows.append([name, f"{first:.2f} s", f"{cached:.3f} s", f"{first / cached:.0f}x"])
            print(rows[-1], flush=True)
    save_record("load-times", record)
    print(markdown_table(["dataset", "first load", "cached load", "speed-up"], rows))


if __name__ == "__main__":
    main()
