"""LSB embed + extract throughput on a model with more than 10M parameters.

Usage:
    python bench/lsb_throughput.py [--bits 16,20,23] [--repeat 3]

Measures the bit-level embed and extract of a payload that fills the carriers (the codec
itself), in MB of float32 parameters per second, against an in-process baseline: copying the
same parameters once (np.copy), the floor for any method that writes every parameter.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

from common import markdown_table, save_record
from covertml.attacks import CarrierMap
from covertml.attacks.bits import capacity_bytes, embed_low_bits, extract_low_bits
from covertml.models import create_model


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="8,12,16,20,23")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = create_model("mlp", input_shape=(3, 64, 64), num_classes=10, hidden=[1024, 1024])
    cmap = CarrierMap.from_model(model)
    floats = cmap.read_numpy(model)
    mb = floats.nbytes / 1e6
    copy_s = best_of(args.repeat, lambda: np.copy(floats))
    rows, records = [], []
    rng = np.random.default_rng(0)
    for bits in [int(b) for b in args.bits.split(",")]:
        payload = rng.integers(0, 256, capacity_bytes(floats.size, bits), dtype=np.uint8).tobytes()
        embed_s = best_of(args.repeat, partial(embed_low_bits, floats, payload, bits))
        out = embed_low_bits(floats, payload, bits)
        extract_s = best_of(args.repeat, partial(extract_low_bits, out, bits, len(payload)))
        assert extract_low_bits(out, bits, len(payload)) == payload
        total = embed_s + extract_s
        rec = {
            "bits": bits,
            "embed_s": embed_s,
            "extract_s": extract_s,
            "mb_per_s": mb / total,
            "ratio_vs_copy": total / copy_s,
        }
        records.append(rec)
        rows.append(
            [
                bits,
                f"{len(payload) / 1e6:.1f} MB",
                f"{1000 * embed_s:.0f} ms",
                f"{1000 * extract_s:.0f} ms",
                f"{mb / total:,.0f} MB/s",
                f"{total / copy_s:.1f}x",
            ]
        )
        print(rows[-1], flush=True)
    save_record(
        "lsb-throughput",
        {"parameters": int(floats.size), "param_mb": mb, "copy_s": copy_s, "rows": records},
    )
    print(
        f"{floats.size:,} carrier parameters ({mb:.1f} MB); np.copy baseline {1000 * copy_s:.1f} ms"
    )
    print(
        markdown_table(
            ["b", "payload", "embed", "extract", "params/s (embed+extract)", "time vs one copy"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
