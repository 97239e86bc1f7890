"""Scan time for a ~10M-parameter model (target: under 5 s on 2 cores).

Usage:
    python bench/scan_time.py [--repeats 3]

Builds an MLP for 32x32x3 input with about 11M parameters, writes it, then times (median
of ``--repeats``) reading the file alone (the baseline), the default scan (distribution,
low-bit statistics and the noise probe on the rebuilt model), the same with a reference
model, and the owner audits with the digits data.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from common import markdown_table, save_record
from covertml.audit import context_from_file, scan
from covertml.data import create_dataset
from covertml.models import create_model, save_model
from covertml.models.files import read_tensors


def timed(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    shape = (3, 32, 32)
    for name, seed in (("model", 0), ("reference", 1)):
        torch.manual_seed(seed)
        model = create_model("mlp", input_shape=shape, num_classes=10, hidden=[2048, 1536, 1024])
        save_model(model, tmp / f"{name}.safetensors")
    n_params = sum(p.numel() for p in model.parameters())
    path, ref = tmp / "model.safetensors", tmp / "reference.safetensors"
    digits = create_dataset("digits")
    cases = {
        "read file (baseline)": lambda: read_tensors(path),
        "scan (default)": lambda: scan(context_from_file(path)),
        "scan --reference": lambda: scan(context_from_file(path, reference=ref)),
        "scan -d digits (owner audits too)": lambda: scan(context_from_file(path, dataset=digits)),
    }
    rows, record = [], {"parameters": n_params}
    base = None
    for label, fn in cases.items():
        fn()  # warm-up (imports, page cache)
        t = timed(fn, args.repeats)
        base = base or t
        record[label] = t
        rows.append([label, f"{t:.2f} s", f"{t / base:.1f}x"])
        print(rows[-1], flush=True)
    save_record("scan-time", record)
    print(f"{n_params:,} parameters")
    print(markdown_table(["what", "median time", "vs reading the file"], rows))


if __name__ == "__main__":
    main()
