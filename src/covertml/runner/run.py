"""Running a grid: jobs in order or in a process pool, every cell recorded, resumable.

:func:`run_grid` plans the grid's jobs (:mod:`covertml.runner.jobs`), skips every cell
already recorded in the run folder, and runs the rest -- in this process (``jobs=1``) or in
a pool of spawned worker processes. A job waits for the models it builds on (the honest
model for LSB, the scan reference) when those are still to be trained. After each cell the
run's ``results.json`` / ``results.csv`` are rewritten, so an interrupted run loses at most
the cells in flight; running the same command again resumes it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from covertml import __version__
from covertml.errors import ConfigError
from covertml.paths import atomic_write_text
from covertml.runner.config import Grid
from covertml.runner.jobs import Job, plan_jobs
from covertml.runner.progress import Progress, RunState, RunSummary, model_ready, peak_rss_mb
from covertml.runner.records import load_records, write_tables
from covertml.runner.worker import (
    drain_events,
    fail_unrecorded,
    pool_init,
    pool_run_job,
    run_job,
)

log = logging.getLogger(__name__)

#: Where jobs run: here (or a process pool), or as tasks on a Ray cluster.
ENGINES = ("local", "ray")


def pending_jobs(grid: Grid, run_dir: Path, done: set[str]) -> list[Job]:
    """The jobs with cells still to run, plus the models they need that are missing."""
    jobs = plan_jobs(grid)
    todo = [
        replace(j, cells=tuple(c for c in j.cells if c.id not in done))  # only what is left
        for j in jobs
        if any(c.id not in done for c in j.cells)
    ]
    needed = {d for j in todo for d in j.depends_on() if not model_ready(run_dir, d)}
    return [j for j in jobs if j.id in needed and not j.cells] + todo


def run_grid(
    grid: Grid,
    out: str | os.PathLike[str],
    *,
    jobs: int = 1,
    data_dir: str | os.PathLike[str] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    threads: int | None = None,
    engine: str = "local",
    address: str | None = None,
) -> RunSummary:
    r"""Runs every cell of ``grid`` not yet recorded in ``out``; returns what was done.

    Args:
        grid: The parsed grid (:func:`~covertml.runner.load_grid`).
        out: Run folder (created); a folder of an earlier run of the same grid resumes it.
        jobs: Worker processes (1: run here, in order).
        data_dir: Folder of the offline datasets (default ``$COVERTML_DATA``).
        on_progress: Called with a :class:`Progress` after every event.
        threads: Torch threads per worker (default: the CPUs shared out among ``jobs``).
        engine: ``local`` (this process, or ``jobs`` worker processes) or ``ray`` (each job a
            Ray task with its dataset's ``[resources]``; :mod:`covertml.runner.ray_engine`).
        address: Ray cluster address (``auto``, ``ray://HOST:10001``); default: a local one.

    Example:
        >>> import tempfile
        >>> from covertml.runner import parse_grid
        >>> g = parse_grid('[datasets.digits]\nepochs = 1\ntrain_limit = 200\ntest_limit = 50')
        >>> run_grid(g, tempfile.mkdtemp()).done
        1
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, not {jobs}", fix="pass --jobs 1 or more")
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}", fix=f"use one of: {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise ConfigError("--address is for the Ray engine", fix="add --engine ray")
    if engine == "ray":
        from covertml.runner.ray_engine import require_ray

        require_ray()  # a missing extra fails before the run folder is touched
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    records = load_records(run_dir, grid.cells())
    state = RunState(grid, run_dir, records, jobs=jobs)
    done = {k for k, r in records.items() if r.get("status") == "ok"}
    todo = pending_jobs(grid, run_dir, done)
    state.to_train = {j.id for j in todo if j.base is None and not model_ready(run_dir, j.id)}
    data = str(data_dir) if data_dir is not None else None
    _write_run(run_dir, grid, jobs=jobs, state=state, finished=False, engine=engine)
    if state.resumed:
        log.info(
            "resuming %s: %d of %d cells already recorded", run_dir, len(done), len(state.cells)
        )

    def emit(event: dict[str, Any]) -> None:
        last = state.on_event(event)
        if on_progress is not None:
            on_progress(state.progress(last))

    if on_progress is not None:
        on_progress(state.progress("resumed" if state.resumed else "started"))
    if engine == "ray":
        from covertml.runner.ray_engine import run_ray

        run_ray(todo, run_dir, grid, data=data, emit=emit, address=address)
    elif jobs == 1:
        for job in todo:
            run_job(
                job,
                str(run_dir),
                data_dir=data,
                oracle=grid.oracle,
                scan_enabled=grid.scan,
                emit=emit,
            )
    else:
        _run_pool(todo, run_dir, grid, jobs=jobs, data=data, threads=threads, emit=emit)
    write_tables(run_dir, state.cells, state.records)
    summary = _write_run(run_dir, grid, jobs=jobs, state=state, finished=True, engine=engine)
    return summary


def _run_pool(
    todo: list[Job],
    run_dir: Path,
    grid: Grid,
    *,
    jobs: int,
    data: str | None,
    threads: int | None,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    events: Any = ctx.Queue()
    cpus = os.cpu_count() or 1
    waiting = list(todo)
    running: dict[Future[None], Job] = {}
    active = None if threads else ctx.Value("i", 0)  # running jobs, for the workers' threads
    executor = ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=pool_init, initargs=(events, active)
    )
    args = (str(run_dir), data, grid.oracle, grid.scan)
    try:
        while waiting or running:
            busy = {j.id for j in waiting} | {j.id for j in running.values()}
            ready = [j for j in waiting if not any(d in busy for d in j.depends_on())]
            start = ready[: jobs - len(running)]
            # a job that runs alone (e.g. the reference everything waits for) gets every core
            share = threads or max(1, cpus // max(1, len(running) + len(start)))
            for job in start:
                waiting.remove(job)
                running[executor.submit(pool_run_job, job, *args, share)] = job
            if active is not None:
                active.value = len(running)
            drain_events(events, emit, timeout=0.5)
            for fut in [f for f in running if f.done()]:
                job = running.pop(fut)
                exc = fut.exception()
                if exc is not None:  # the worker died (e.g. out of memory): record its cells
                    drain_events(events, emit, timeout=0.1)
                    log.error("job %s: worker failed (%s)", job.id, exc)
                    fail_unrecorded(run_dir, job, f"worker died: {exc}", emit)
        drain_events(events, emit, timeout=0.1)
    except BaseException:
        for proc in list(getattr(executor, "_processes", {}).values()):
            proc.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _write_run(
    run_dir: Path, grid: Grid, *, jobs: int, state: RunState, finished: bool, engine: str
) -> RunSummary:
    p = state.progress()
    summary = RunSummary(
        out=str(run_dir),
        total=p.total,
        done=p.done,
        failed=p.failed,
        resumed=state.resumed,
        seconds=p.elapsed,
        peak_rss_mb=peak_rss_mb(),
    )
    info = {
        "grid": grid.to_dict(),
        "jobs": jobs,
        "engine": engine,
        "finished": finished,
        "summary": summary.to_dict(),
        "environment": {
            "covertml": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
    }
    atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2) + "\n")
    return summary
