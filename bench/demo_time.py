"""Wall time and peak memory of ``covertml demo`` (median of N runs).

Usage:
    python bench/demo_time.py --runs 3

Runs the README's demo command as a fresh process each time (imports included) and prints
each run's wall time and peak resident memory, then the median. The target is under
3 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import save_record


def one_run(out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one ``covertml demo``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "covertml", "demo", "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far: exact for the first run, a bound later
    return seconds, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            seconds, rss = one_run(Path(tmp) / "demo")
            rows.append({"run": i + 1, "seconds": seconds, "peak_rss_mb": rss})
            print(f"run {i + 1}: {seconds:.1f} s, peak RSS {rss:.0f} MB", flush=True)
    median = statistics.median(r["seconds"] for r in rows)
    print(f"median of {args.runs}: {median:.1f} s (target < 180 s)")
    save_record("demo-time", {"runs": rows, "median_seconds": median})


if __name__ == "__main__":
    main()
