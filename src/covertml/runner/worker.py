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
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from covertml.attacks import LocalOracle, create_attack, decode_capacity, decode_secret
from covertml.attacks.base import AttackPlan
from covertml.attacks.score import score_recovery
from covertml.attacks.secrets import Secret
from covertml.data import create_dataset
from covertml.data.base import Dataset
from covertml.errors import CovertMLError
from covertml.models import create_model_for, save_model
from covertml.models.files import read_tensors
from covertml.models.registry import model_spec
from covertml.paths import atomic_write_text
from covertml.runner.config import TRAIN_KEYS, Cell
from covertml.runner.jobs import Job, safe_path
from covertml.training import Trainer, accuracy_on, recipe, seed_everything
from covertml.training.pipeline import attack_summary
from covertml.training.trainer import TrainResult

log = logging.getLogger(__name__)

Event = dict[str, Any]
RECIPE_KEYS = TRAIN_KEYS - {"train_limit", "test_limit", "model"}
#: Decoded text kept per cell for the report (documents, and words per document).
TEXT_SAMPLE = (3, 120)


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


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


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
        "history": [e.to_dict() for e in result.history],
    }
    if plan is not None:
        metrics["attack"] = attack_summary(plan, model, result)
        plan.key.save(folder / "key.json")
    save_model(model, folder / "model.safetensors", classes=ds.classes)
    _write_json(metrics_path, metrics)
    return model, plan, metrics


def _decode(model: nn.Module, plan: AttackPlan, oracle: str) -> tuple[Secret, dict[str, Any]]:
    if plan.key.attack != "capacity":
        return decode_secret(model, plan.key), {"via": "model file"}
    if oracle == "http":
        from covertml.serve import BackgroundServer, HTTPOracle
        from covertml.serve.app import create_app

        spec = plan.key.architecture
        args = spec.get("args", {})
        app = create_app(
            model,
            input_shape=tuple(args["input_shape"]),
            num_classes=int(args["num_classes"]),
            sparse=len(args["input_shape"]) == 1 and plan.secret.kind == "text",
        )
        with BackgroundServer(app) as server, HTTPOracle(server.url) as http:
            secret = decode_capacity(http, plan.key)
            return secret, {"via": "HTTP labels", "queries": http.queries, "endpoint": server.url}
    local = LocalOracle(model)
    return decode_capacity(local, plan.key), {"via": "local labels", "queries": local.queries}


def _artifacts(
    cell_dir: Path, truth: Secret, got: Secret, vocabulary: tuple[str, ...] | None
) -> dict[str, str]:
    from covertml.report.grid import save_grid

    if truth.kind == "image":
        save_grid(cell_dir / "original_vs_recovered.png", [truth.images(), got.images()])
        return {"grid": "original_vs_recovered.png"}
    docs, words = TEXT_SAMPLE

    def name(t: int) -> str:
        return vocabulary[t] if vocabulary is not None and 0 <= t < len(vocabulary) else f"#{t}"

    sample = [
        {
            "original": [name(int(t)) for t in a[:words]],
            "recovered": [name(int(t)) for t in b[:words]],
        }
        for a, b in list(zip(truth.documents(), got.documents(), strict=True))[:docs]
    ]
    _write_json(cell_dir / "documents.json", sample)
    return {"documents": "documents.json"}


def recover(
    model: nn.Module, plan: AttackPlan, ds: Dataset, *, oracle: str, cell_dir: Path | None
) -> dict[str, Any]:
    """What the adversary recovers from ``model`` with the key, scored against the truth."""
    try:
        got, via = _decode(model, plan, oracle)
    except CovertMLError as exc:
        return {"recovered": False, "why": str(exc).split(";")[0][:160]}
    scores = score_recovery(plan.secret, got).to_dict()
    out: dict[str, Any] = {"recovered": True, **via, **scores}
    if cell_dir is not None:
        out["artifacts"] = _artifacts(cell_dir, plan.secret, got, ds.vocabulary)
    return out


def scan_model(
    model: nn.Module, reference: nn.Module | None, ds: Dataset, *, seed: int
) -> dict[str, Any]:
    """The scanner's verdict on ``model`` (against ``reference`` when there is one)."""
    from covertml.audit import ScanContext, scan
    from covertml.models.files import ModelInfo

    ctx = ScanContext(
        model.state_dict(),
        info=ModelInfo(model_spec(model), classes=ds.classes),
        model=model,
        reference=reference.state_dict() if reference is not None else None,
        reference_model=reference,
        dataset=ds,
        seed=seed,
    )
    report = scan(ctx)
    return {
        "verdict": report.verdict,
        "flagged_by": [r.detector for r in report.reports if r.flagged],
        "scores": {r.detector: r.score for r in report.reports},
        "seconds": report.seconds,
    }


def evaluate_cell(
    cell: Cell,
    model: nn.Module,
    plan: AttackPlan | None,
    ds: Dataset,
    *,
    run_dir: Path,
    oracle: str,
    reference: nn.Module | None,
    scan_enabled: bool,
) -> dict[str, Any]:
    """Sanitizes (unless ``none``), then measures accuracy, recovery and the scan verdict."""
    from covertml.defenses import create_sanitizer

    start = time.perf_counter()
    cell_dir = run_dir / "cells" / safe_path(cell.id)
    cell_dir.mkdir(parents=True, exist_ok=True)
    clean = model
    if cell.sanitizer != "none":
        sanitizer = create_sanitizer(cell.sanitizer, **cell.sanitizer_options)
        clean = sanitizer.sanitize(model, seed=cell.seed + 1, dataset=ds)
    record: dict[str, Any] = {"test_accuracy": accuracy_on(clean, ds.test)}
    if plan is not None:
        record["recovery"] = recover(clean, plan, ds, oracle=oracle, cell_dir=cell_dir)
    if scan_enabled and cell.sanitizer == "none":  # the released model, as a hub would see it
        record["scan"] = scan_model(clean, reference, ds, seed=cell.seed)
    record["seconds"] = time.perf_counter() - start
    return record


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
    _write_json(root / "cells" / safe_path(cell.id) / "record.json", record)
    emit(
        {
            "event": "cell",
            "cell": cell.id,
            "status": result["status"],
            "seconds": result.get("seconds"),
        }
    )


# -- process-pool plumbing ---------------------------------------------------------------
_QUEUE: Any = None


def pool_init(queue: Any) -> None:
    """Worker-process initializer: the event queue, and Ctrl-C left to the parent."""
    import signal

    global _QUEUE
    _QUEUE = queue
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
