"""How long each ``configs/paper`` grid takes: models, epochs, time on this CPU, on 1 and N GPUs.

Usage:
    python bench/grid_sizing.py --data-dir ../shared/data [--gpus 1 2 4 8]
    python bench/grid_sizing.py --data-dir ../shared/data --gpu-epoch cifar10=4.5

For each grid: its cells, its jobs, the models it trains (an LSB job writes its secret
into the honest model of its seed and trains nothing), and their *epoch-equivalents*: a
job's epochs times the share of the training set it sees per epoch (capacity abuse trains
on n + m inputs, so m/n = 2 costs three epochs' worth), plus the fine-tuning sanitizer's
epochs on every model. One epoch of the grid's model is timed here, on a seeded subset of
``--limit`` training items, and scaled to the full set (time per epoch is linear in the
items). The GPU columns use a time per epoch on one GPU: measured ones given with
``--gpu-epoch DATASET=SECONDS`` (from ``bench/cifar_epoch_time.py --device cuda``), else
the CPU time over the assumed speed-up in ``GPU_SPEEDUP`` below (marked ``~``). N GPUs: the
jobs list-scheduled in the runner's order onto N devices (Ray, one GPU per job), each job
starting when the models it waits for (its LSB base, the scan reference) are done.
"""

from __future__ import annotations

import argparse
import heapq
from pathlib import Path

from common import markdown_table, save_record
from covertml.data import create_dataset
from covertml.data.registry import DATASETS
from covertml.models import create_model_for
from covertml.runner import load_grid, plan_jobs
from covertml.runner.jobs import Job
from covertml.training import Trainer, recipe, seed_everything

ROOT = Path(__file__).resolve().parent.parent
# Assumed speed-up of one current data-centre GPU (A100 / H100 class) over this 2-core CPU
# per epoch, by modality. Images: ResNet-32 on CIFAR-10 trains here at ~97 s per epoch,
# and eager PyTorch on such a GPU is launch-bound at about 391 steps x ~12 ms = ~5 s
# (batch 128, data kept on the device): ~20x. Text: TF-IDF rows are sparse and stay on the
# host (covertml keeps only dense data on the device), and the linear models are tiny, so
# no speed-up is assumed. Not measured here (no GPU on this machine): pass --gpu-epoch
# figures from `bench/cifar_epoch_time.py --device cuda` to replace the estimate.
GPU_SPEEDUP = {"image": 20.0, "text": 1.0}


def epoch_equivalents(grid_path: Path) -> tuple[list[tuple[Job, float]], int, float]:
    """Each job with the epochs of full-set training it costs; cells; fine-tune epochs."""
    grid = load_grid(grid_path)
    out = []
    for job in plan_jobs(grid):
        epochs = float(grid.datasets[job.dataset].get("epochs") or recipe(job.dataset).epochs)
        if job.attack == "lsb" and job.base is not None:
            cost = 0.0  # post steps on the honest model
        elif job.attack == "capacity":
            cost = epochs * (1.0 + float(job.attack_options.get("ratio", 1.0)))
        else:
            cost = epochs
        out.append((job, cost))
    finetune = sum(float(o.get("epochs", 2)) for o in grid.sanitizers.get("finetune", []))
    return out, len(grid.cells()), finetune * len(out)


def cpu_epoch_seconds(dataset: str, model: str | None, *, data_dir: str, limit: int) -> float:
    """One epoch of the grid's model on ``limit`` items, scaled to the full training set."""
    full = create_dataset(dataset, data_dir=data_dir)
    ds = create_dataset(dataset, data_dir=data_dir, train_limit=min(limit, len(full.train)))
    seed_everything(0)
    net = create_model_for(ds, model)
    result = Trainer(recipe(dataset, epochs=1, device="cpu")).fit(net, ds.train)
    return result.history[0].seconds * len(full.train) / len(ds.train)


def makespan(jobs: list[tuple[Job, float]], epoch_s: float, finetune: float, n: int) -> float:
    """Seconds for the grid on ``n`` devices: list scheduling with the jobs' dependencies."""
    per_ft = finetune / max(len(jobs), 1)
    done: dict[str, float] = {}
    free = [0.0] * n
    heapq.heapify(free)
    for job, cost in jobs:  # plan order: every job comes after the jobs it waits for
        start = max([heapq.heappop(free)] + [done[d] for d in job.depends_on() if d in done])
        done[job.id] = start + (cost + per_ft) * epoch_s
        heapq.heappush(free, done[job.id])
    return max(done.values(), default=0.0)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--limit", type=int, default=2_000)
    parser.add_argument("--gpus", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--gpu-epoch", action="append", default=[], metavar="DATASET=SECONDS")
    paper = sorted((ROOT / "configs/paper").glob("*.toml"))
    parser.add_argument("--grids", nargs="+", default=paper)
    args = parser.parse_args()
    measured_gpu = {k: float(v) for k, _, v in (s.partition("=") for s in args.gpu_epoch)}
    rows, record = [], {}
    for path in map(Path, args.grids):
        grid = load_grid(path)
        ((dataset, train),) = grid.datasets.items()
        jobs, cells, finetune = epoch_equivalents(path)
        trained = sum(1 for _, c in jobs if c > 0)
        total = sum(c for _, c in jobs) + finetune
        cpu = cpu_epoch_seconds(
            dataset, train.get("model"), data_dir=args.data_dir, limit=args.limit
        )
        modality = DATASETS.get(dataset.partition(":")[0]).meta.get("modality", "image")
        gpu = measured_gpu.get(dataset, cpu / GPU_SPEEDUP.get(str(modality), 1.0))
        mark = "" if dataset in measured_gpu else "~"
        spans = {n: makespan(jobs, gpu, finetune, n) for n in [1, *args.gpus]}
        rows.append(
            [
                path.name,
                f"{cells} cells, {len(jobs)} jobs, {trained} trained",
                f"{total:.0f}",
                f"{cpu:.1f} s",
                hours(total * cpu),
                f"{mark}{gpu:.1f} s",
                *(f"{mark}{hours(spans[n])}" for n in spans),
            ]
        )
        print(rows[-1], flush=True)
        record[path.name] = {
            "cells": cells,
            "jobs": len(jobs),
            "trained_models": trained,
            "epoch_equivalents": total,
            "cpu_seconds_per_epoch": cpu,
            "gpu_seconds_per_epoch": gpu,
            "gpu_measured": dataset in measured_gpu,
            "gpu_hours": {str(n): spans[n] / 3600 for n in spans},
        }
    save_record("grid-sizing", record)
    header = ["grid", "size", "epoch-equiv.", "CPU s/epoch", "CPU total", "GPU s/epoch"]
    header += ["1 GPU"] + [f"{n} GPUs" for n in args.gpus]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
