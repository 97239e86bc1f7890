"""Observations on disk: how the guarded child hands what it saw to the parent.

``observed.json`` holds the counts, ``examples.npz`` the kept unmatched inputs (plain
arrays, read without pickle) and ``snapshots/step-N.safetensors`` the model snapshots
(``final.safetensors`` the state at exit). Everything is written atomically.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save

from covertml.paths import atomic_write, atomic_write_text
from covertml.supervise.watch import COUNTS, Observations


def save_observations(seen: Observations, out: Path) -> None:
    """Writes ``seen`` under ``out`` (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    data = {k: getattr(seen, k) for k in COUNTS}
    data.update(
        tamper=seen.tamper,
        notes=seen.notes,
        saved=seen.saved,
        shapes=seen.shapes,
        guard_seconds=seen.guard_seconds,
        match_seconds=seen.match_seconds,
        wall_seconds=seen.wall_seconds,
        example_steps=[e["step"] for e in seen.examples],
        example_scores=[e["score"] for e in seen.examples],
    )
    buf = io.BytesIO()
    np.savez(
        buf,
        scores=np.asarray(seen.scores, dtype=np.float32),
        **{f"input{i}": e["input"] for i, e in enumerate(seen.examples)},
    )
    with atomic_write(out / "examples.npz") as f:
        f.write(buf.getvalue())
    snaps = out / "snapshots"
    snaps.mkdir(exist_ok=True)
    steps = []
    for step, state in seen.snapshots:
        name = "final" if step < 0 else f"step-{step}"
        tensors = {k: v.contiguous() for k, v in state.items()}
        with atomic_write(snaps / f"{name}.safetensors") as f:
            f.write(save(tensors))
        steps.append(step)
    data["snapshot_steps"] = steps
    atomic_write_text(out / "observed.json", json.dumps(data, indent=1))


def load_observations(out: Path) -> Observations:
    """Reads what :func:`save_observations` wrote."""
    data = json.loads((out / "observed.json").read_text())
    seen = Observations()
    for k in COUNTS:
        setattr(seen, k, int(data[k]))
    seen.tamper, seen.saved, seen.shapes = data["tamper"], data["saved"], data["shapes"]
    seen.notes = data["notes"]
    seen.guard_seconds, seen.wall_seconds = data["guard_seconds"], data["wall_seconds"]
    seen.match_seconds = data["match_seconds"]
    seen.scores, seen.examples = _load_examples(out, data)
    for step in data["snapshot_steps"]:
        name = "final" if step < 0 else f"step-{step}"
        seen.snapshots.append((int(step), load_file(out / "snapshots" / f"{name}.safetensors")))
    return seen


def load_examples(out: Path) -> list[dict[str, Any]]:
    """Only the kept unmatched inputs (without the snapshots), e.g. for the HTML page."""
    return _load_examples(out, json.loads((out / "observed.json").read_text()))[1]


def _load_examples(out: Path, data: dict[str, Any]) -> tuple[list[float], list[dict[str, Any]]]:
    with np.load(out / "examples.npz", allow_pickle=False) as npz:
        examples = [
            {"step": s, "score": sc, "input": npz[f"input{i}"]}
            for i, (s, sc) in enumerate(
                zip(data["example_steps"], data["example_scores"], strict=True)
            )
        ]
        return npz["scores"].astype(float).tolist(), examples
