"""Running one job: train (or reuse) its model, then evaluate and record each of its cells.

Everything a job writes lands under the run folder, atomically:

- ``models/<job>/model.safetensors``, ``metrics.json`` (and ``key.json`` for attacks): the
  trained model, so a resumed run reuses it instead of training again;
- ``cells/<cell>/record.json``: the cell's result, written the moment the cell finishes;
- ``cells/<cell>/original_vs_recovered.png`` or ``documents.json``: what the adversary got.

The worker reports progress through a callback (in a process pool, a queue).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from covertml.attacks import create_attack
from covertml.attacks.base import AttackPlan
from covertml.data import create_dataset
from covertml.data.base import Dataset
from covertml.models import create_model_for, save_model
from covertml.models.files import read_tensors
from covertml.models.registry import model_spec
from covertml.runner.config import TRAIN_KEYS, Cell
from covertml.runner.evaluate import evaluate_cell, write_json
from covertml.runner.jobs import Job, safe_path
from covertml.runner.records import record_path
from covertml.training import Trainer, recipe, seed_everything
from covertml.training.config import TrainResult
from covertml.training.pipeline import attack_summary

log = logging.getLogger(__name__)

Event = dict[str, Any]
RECIPE_KEYS = TRAIN_KEYS - {"train_limit", "test_limit", "model"}


@functools.lru_cache(maxsize=4)
def load_dataset(
    name: str, train_limit: int | None, test_limit: int | None, data_dir: str | None
) -> Dataset:
    """The dataset of a job (cached per process: a worker runs many jobs on one dataset)."""
    return create_dataset(name, data_dir=data_dir, train_limit=train_limit, test_limit=test_limit)


def job_dataset(job: Job, data_dir: str | None) -> Dataset:
    """Loads ``job``'s dataset with its limits."""
    return load_dataset(
        job.dataset, job.train.get("train_limit"), job.train.get("test_limit"), data_dir
    )


def _load_weights(model: nn.Module, path: Path) -> None:
    tensors, _ = read_tensors(path)
    model.load_state_dict(tensors)


def prepare_model(
    job: Job, ds: Dataset, run_dir: Path
) -> tuple[nn.Module, AttackPlan | None, dict[str, Any]]:
    """The job's trained model and attack plan: loaded when recorded, else trained and saved.

    The attack is always planned on a fresh model seeded like the original run, so the plan
    (secret, key) is the same whether the model is trained now or loaded.
    """
    cfg = recipe(
        ds.name, seed=job.train_seed, **{k: v for k, v in job.train.items() if k in RECIPE_KEYS}
    )
    seed_everything(cfg.seed)
    model = create_model_for(ds, job.train.get("model"))
    plan = None
    if job.attack not in ("honest", "reference"):
        plan = create_attack(job.attack, **job.attack_options).plan(model, ds, seed=cfg.seed)
    folder = run_dir / "models" / safe_path(job.id)
    metrics_path = folder / "metrics.json"
    if (folder / "model.safetensors").is_file() and metrics_path.is_file():
        _load_weights(model, folder / "model.safetensors")
        return model.eval(), plan, json.loads(metrics_path.read_text())
    start = time.perf_counter()
    base_file = run_dir / "models" / safe_path(job.base) / "model.safetensors" if job.base else None
    if plan is not None and base_file is not None and base_file.is_file():
        _load_weights(model, base_file)  # honest training, then the attack's post steps
        for step in plan.post_steps:
            step(model)
        result = TrainResult(cfg, (), None, 0.0)
        how = f"post steps on {job.base}"
    else:
        trainer = plan.trainer(cfg) if plan is not None else Trainer(cfg)
        if _ACTIVE is not None:
            trainer.callbacks.append(_rebalance_threads)
        result = trainer.fit(model, ds.train)
        how = "trained"
    model.eval()
    metrics: dict[str, Any] = {
        "job": job.id,
        "how": how,
        "dataset": ds.summary(),
        "model": model_spec(model).to_dict(),
        "config": cfg.to_dict(),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": time.perf_counter() - start,
        "device": result.device,
        "history": [e.to_dict() for e in result.history],
    }
    if plan is not None:
        metrics["attack"] = attack_summary(plan, model, result)
        plan.key.save(folder / "key.json")
    release = plan.release_dtype if plan is not None else None
    save_model(model, folder / "model.safetensors", classes=ds.classes, dtype=release)
    write_json(metrics_path, metrics)
    return model, plan, metrics


def run_job(
    job: Job,
    run_dir: str,
    *,
    data_dir: str | None,
    oracle: str,
    scan_enabled: bool,
    emit: Callable[[Event], None],
) -> None:
    """Trains (or loads) ``job``'s model and records each of its cells as it finishes."""
    root = Path(run_dir)
    emit({"event": "job-start", "job": job.id, "cells": [c.id for c in job.cells]})
    try:
        ds = job_dataset(job, data_dir)
        had_model = (root / "models" / safe_path(job.id) / "model.safetensors").is_file()
        started = time.perf_counter()
        model, plan, metrics = prepare_model(job, ds, root)
        emit(
            {
                "event": "job-model",
                "job": job.id,
                "trained": not had_model and metrics.get("how") == "trained",
                "seconds": time.perf_counter() - started,
            }
        )
        reference = None
        ref_file = (
            root / "models" / safe_path(job.reference) / "model.safetensors"
            if job.reference
            else None
        )
        if ref_file is not None and ref_file.is_file():
            from covertml.models import load_model

            reference = load_model(ref_file).model
    except Exception as exc:  # a job's failure is recorded, the run goes on
        log.debug("job %s failed", job.id, exc_info=True)
        for cell in job.cells:
            _finish(root, cell, {"status": "failed", "error": _one_line(exc)}, emit)
        emit({"event": "job-end", "job": job.id})
        return
    common = {
        "model": metrics["model"]["name"],
        "n_parameters": metrics.get("n_parameters"),
        "train_seconds": metrics.get("train_seconds"),
        "device": metrics.get("device"),
        "attack": metrics.get("attack"),
        "model_file": str(Path("models") / safe_path(job.id) / "model.safetensors"),
    }
    for cell in job.cells:
        try:
            result = evaluate_cell(
                cell,
                model,
                plan,
                ds,
                run_dir=root,
                oracle=oracle,
                reference=reference,
                scan_enabled=scan_enabled,
            )
            _finish(root, cell, {"status": "ok", **common, **result}, emit)
        except Exception as exc:
            log.debug("cell %s failed", cell.id, exc_info=True)
            _finish(
                root,
                cell,
                {
                    "status": "failed",
                    "error": _one_line(exc),
                    "trace": traceback.format_exc(limit=3),
                },
                emit,
            )
    emit({"event": "job-end", "job": job.id})


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def _finish(root: Path, cell: Cell, result: dict[str, Any], emit: Callable[[Event], None]) -> None:
    record = {
        "id": cell.id,
        "cell": cell.to_dict(),
        **result,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pid": os.getpid(),
    }
    write_json(record_path(root, cell.id), record)
    emit(
        {
            "event": "cell",
            "cell": cell.id,
            "status": result["status"],
            "seconds": result.get("seconds"),
            "record": record,
        }
    )


def fail_unrecorded(root: Path, job: Job, error: str, emit: Callable[[Event], None]) -> None:
    """Records every cell of ``job`` not yet recorded as failed (its worker or task died)."""
    for cell in job.cells:
        if not record_path(root, cell.id).is_file():
            _finish(root, cell, {"status": "failed", "error": error[:300]}, emit)


def drain_events(events: Any, emit: Callable[[Event], None], *, timeout: float) -> None:
    """Emits what a worker queue holds, waiting up to ``timeout`` for the first event.

    Works with a multiprocessing queue and a Ray queue alike (Ray's ``Empty`` is a
    :class:`queue.Empty`).
    """
    try:
        event = events.get(timeout=timeout)
    except queue.Empty:
        return
    emit(event)
    while True:
        try:
            emit(events.get_nowait())
        except queue.Empty:
            return


# -- process-pool plumbing ---------------------------------------------------------------
_QUEUE: Any = None
_ACTIVE: Any = None  # shared count of running jobs (None: threads fixed by the user)


def _rebalance_threads(epoch: int, model: nn.Module) -> None:
    """After each epoch: share the CPUs among the jobs running now (others may have ended)."""
    want = max(1, (os.cpu_count() or 1) // max(1, int(_ACTIVE.value)))
    if want != torch.get_num_threads():
        torch.set_num_threads(want)


def pool_init(queue: Any, active: Any) -> None:
    """Worker-process initializer: event queue, running-job count, Ctrl-C left to the parent."""
    import signal

    global _QUEUE, _ACTIVE
    _QUEUE, _ACTIVE = queue, active
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)


def pool_run_job(
    job: Job, run_dir: str, data_dir: str | None, oracle: str, scan_enabled: bool, threads: int
) -> None:
    """:func:`run_job` in a pool worker with ``threads`` torch threads, events to the parent."""
    torch.set_num_threads(max(1, threads))
    run_job(
        job, run_dir, data_dir=data_dir, oracle=oracle, scan_enabled=scan_enabled, emit=_QUEUE.put
    )
