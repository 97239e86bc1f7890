"""Evaluating one cell: sanitize the job's model, then measure accuracy, recovery and the scan.

What the adversary recovers is scored against the true secret; its image grid or decoded
documents are written beside the cell's record (``cells/<cell>/``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from torch import nn

from covertml.attacks import LocalOracle, decode_capacity, decode_secret
from covertml.attacks.base import AttackPlan
from covertml.attacks.score import score_recovery
from covertml.attacks.secrets import Secret
from covertml.data.base import Dataset
from covertml.errors import CovertMLError
from covertml.models.registry import model_spec
from covertml.paths import atomic_write_text
from covertml.runner.config import Cell
from covertml.runner.jobs import safe_path
from covertml.training import accuracy_on

#: Decoded text kept per cell for the report (documents, and words per document).
TEXT_SAMPLE = (3, 120)


def write_json(path: Path, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


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
    write_json(cell_dir / "documents.json", sample)
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
    probe: dict[str, Any] = {}
    if reference is not None:  # the black-box probe is opt-in: recorded beside the verdict
        from covertml.audit import create_detector

        found = create_detector("noise-probe").run(ctx, alpha=report.alpha)
        probe = {"noise_probe_p": found.p_value, "noise_probe_flagged": found.flagged}
    return {
        **probe,
        "verdict": report.verdict,
        "flagged_by": [r.detector for r in report.reports if r.flagged],
        "scores": {r.detector: r.score for r in report.reports},
        "p_values": {r.detector: r.p_value for r in report.reports},
        "alpha": report.alpha,
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
