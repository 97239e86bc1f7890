"""Markdown tables of finished grid runs, with the paper's reported values beside ours.

Usage:
    python bench/grid_tables.py runs/cpu-digits runs/cpu-cifar10 ... > /tmp/tables.md

Reads each run folder's ``results.json`` and ``run.json`` (written by ``covertml reproduce``)
and prints the report's tables as markdown, plus each run's wall time and peak memory (from
``run.json``, or from a ``/usr/bin/time -v`` log beside the run when given with
``--time-log DIR=LOG``). docs/RESULTS.md §5 is this script's output.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from common import markdown_table
from covertml.report.html import load_results
from covertml.report.tables import Table, all_tables

#: What the paper reports for each table (approximate unless marked; see PAPER_NOTES.md).
PAPER = {
    "lsb": "≈18 to 26 low bits per float32 overwritten with negligible accuracy change",
    "correlation": (
        "CIFAR-10 λc ≈ 1: MAPE ≈ 30 at ≈ 2 points; text: about 70% of a corpus leaked (confirmed)"
    ),
    "sign": "λs ≈ 10 to 50; within 1 to 2 points of the baseline (confirmed, abstract)",
    "capacity": (
        "m up to several times n at ≈ 1 to 2 points; images near the 4-bit floor"
        " (MAPE ≈ 7.5 with the lower-edge decoder)"
    ),
}


def table_md(t: Table) -> str:
    note = f"\n\nPaper: {PAPER[t.name]}." if t.name in PAPER else ""
    return f"**{t.title}**\n\n" + markdown_table(list(t.header), t.rows) + note


def wall_and_memory(run: Path, time_logs: dict[str, str]) -> str:
    info = json.loads((run / "run.json").read_text())
    s = info["summary"]
    minutes = s["seconds"] / 60
    text = f"{s['done']}/{s['total']} cells, {s['failed']} failed; last session {minutes:.1f} min"
    log = time_logs.get(str(run))
    if log and Path(log).is_file():
        raw = Path(log).read_text(errors="replace")
        wall = re.search(r"Elapsed \(wall clock\) time.*: ([\d:.]+)", raw)
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", raw)
        if wall and rss:
            text += (
                f"; /usr/bin/time: wall {wall.group(1)}, peak RSS {int(rss.group(1)) / 1024:.0f} MB"
            )
    return text + f"; peak RSS (run.json) {s['peak_rss_mb']:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--time-log", action="append", default=[], help="RUN_DIR=LOG")
    args = parser.parse_args()
    logs = dict(item.split("=", 1) for item in args.time_log)
    records = []
    for run in args.runs:
        records += load_results(Path(run))
        print(f"- `{run}`: {wall_and_memory(Path(run), logs)}")
    print()
    for t in all_tables(records):
        print(table_md(t))
        print()


if __name__ == "__main__":
    main()
