"""Running a grid's jobs as Ray tasks: one machine's cores, or a cluster's machines and GPUs.

``covertml reproduce --engine ray`` hands each training job to Ray with the CPUs and GPUs
its dataset asks for (``[resources.DATASET]`` in the grid; one CPU, and one GPU when the
dataset trains on CUDA, by default). A task runs exactly what a local worker runs
(:func:`covertml.runner.worker.run_job`), writes the same files into the run folder and
reports the same events, through a Ray queue, to this process, which keeps the tables.
Records, resume and result tables are therefore the local engine's.

The run folder must be visible to every node at the same path (one machine, or a shared
filesystem such as NFS on a cluster); each task checks this first and fails its cells with
a clear message when it is not. Ray is an optional extra: ``pip install 'covertml[ray]'``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from covertml.errors import ConfigError
from covertml.runner.config import Grid
from covertml.runner.jobs import Job
from covertml.runner.worker import drain_events, fail_unrecorded, run_job

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--engine ray needs Ray, which is not installed",
            fix="pip install 'covertml[ray]' (or use the default --engine local)",
        ) from None
    return ray


def job_resources(grid: Grid, job: Job, *, cluster_gpus: float = 0.0) -> dict[str, float]:
    r"""The ``num_cpus`` / ``num_gpus`` a job asks Ray for.

    ``[resources.DATASET]`` when the grid has it; otherwise one CPU, and one GPU when the
    dataset trains on ``cuda`` (or on ``auto`` and the cluster has GPUs).

    Example:
        >>> from covertml.runner.config import parse_grid
        >>> from covertml.runner.jobs import plan_jobs
        >>> g = parse_grid('[datasets.digits]\n[resources.digits]\ncpus = 2')
        >>> job_resources(g, plan_jobs(g)[0])
        {'num_cpus': 2.0, 'num_gpus': 0.0}
    """
    asked = grid.resources.get(job.dataset, {})
    device = str(job.train.get("device", "auto"))
    wants_gpu = device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)
    return {
        "num_cpus": float(asked.get("cpus", 1.0)),
        "num_gpus": float(asked.get("gpus", 1.0 if wants_gpu else 0.0)),
    }


def check_fits(grid: Grid, todo: list[Job], *, cpus: float, gpus: float) -> None:
    r"""Refuses a job no node of the cluster could ever run (Ray would wait for it forever).

    Example:
        >>> from covertml.runner.config import parse_grid
        >>> from covertml.runner.jobs import plan_jobs
        >>> g = parse_grid('[datasets.digits]\n[resources.digits]\ngpus = 1')
        >>> check_fits(g, plan_jobs(g), cpus=2, gpus=0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        covertml.errors.ConfigError: job digits/honest/seed0 asks for 1 GPU(s)...has 0 GPU(s)...
    """
    for job in todo:
        res = job_resources(grid, job, cluster_gpus=gpus)
        if res["num_gpus"] > gpus or res["num_cpus"] > cpus:
            raise ConfigError(
                f"job {job.id} asks for {res['num_gpus']:g} GPU(s) and {res['num_cpus']:g} "
                f"CPU(s), and the Ray cluster has {gpus:g} GPU(s) and {cpus:g} CPU(s) in all",
                fix=f"join a cluster that has them (--address), or lower [resources."
                f"{job.dataset}] in the grid",
            )


def ray_run_job(
    job: Job,
    run_dir: str,
    data_dir: str | None,
    oracle: str,
    scan_enabled: bool,
    threads: int,
    marker: str,
    events: Any,
) -> None:
    """The body of one Ray task: :func:`run_job` with ``threads`` torch threads."""
    if not (Path(run_dir) / marker).is_file():
        import socket

        raise ConfigError(
            f"the run folder {run_dir} is not visible on node {socket.gethostname()}",
            fix="put the run folder on a filesystem every Ray node shares (e.g. NFS), "
            "at the same path",
        )
    torch.set_num_threads(max(1, threads))
    run_job(
        job, run_dir, data_dir=data_dir, oracle=oracle, scan_enabled=scan_enabled, emit=events.put
    )


def run_ray(
    todo: list[Job],
    run_dir: Path,
    grid: Grid,
    *,
    data: str | None,
    emit: Emit,
    address: str | None = None,
) -> None:
    """Runs ``todo`` as Ray tasks, each when the jobs it builds on have finished.

    Connects to the cluster at ``address`` (``auto``: the one ``ray start`` began on this
    machine); with no address and no Ray session in this process, starts a local one for
    the run and stops it after. A session already started in this process is used as is.
    """
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if address is None:
            kwargs["include_dashboard"] = False
        ray.init(address=address, **kwargs)
        started = True
    marker = f".ray-{uuid.uuid4().hex}"
    (run_dir / marker).touch()
    try:
        _schedule(ray, todo, run_dir, grid, data=data, emit=emit, marker=marker)
    finally:
        (run_dir / marker).unlink(missing_ok=True)
        if started:
            ray.shutdown()


def _schedule(
    ray: Any,
    todo: list[Job],
    run_dir: Path,
    grid: Grid,
    *,
    data: str | None,
    emit: Emit,
    marker: str,
) -> None:
    from ray.util.queue import Queue

    cluster = ray.cluster_resources()
    gpus = float(cluster.get("GPU", 0.0))
    check_fits(grid, todo, cpus=float(cluster.get("CPU", 0.0)), gpus=gpus)
    events = Queue(actor_options={"num_cpus": 0})  # never waits for a free CPU
    task = ray.remote(ray_run_job)
    waiting = list(todo)
    running: dict[Any, Job] = {}

    try:
        while waiting or running:
            busy = {j.id for j in waiting} | {j.id for j in running.values()}
            for job in [j for j in waiting if not any(d in busy for d in j.depends_on())]:
                waiting.remove(job)
                res = job_resources(grid, job, cluster_gpus=gpus)
                threads = max(1, round(res["num_cpus"]))
                ref = task.options(max_retries=0, **res).remote(
                    job, str(run_dir), data, grid.oracle, grid.scan, threads, marker, events
                )
                running[ref] = job
            drain_events(events, emit, timeout=0.2)
            if running:
                finished, _ = ray.wait(list(running), num_returns=len(running), timeout=0.3)
                for ref in finished:
                    job = running.pop(ref)
                    try:
                        ray.get(ref)
                    except Exception as exc:  # the task died (out of memory, a lost node)
                        drain_events(events, emit, timeout=0.1)
                        log.error("job %s: Ray task failed (%s)", job.id, exc)
                        fail_unrecorded(run_dir, job, f"Ray task failed: {_cause(exc)}", emit)
        drain_events(events, emit, timeout=0.1)
    except BaseException:
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    finally:
        ray.kill(events.actor)


def _cause(exc: BaseException) -> BaseException:
    """The task's own exception where Ray wrapped it."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
