"""Sanitizing model files: read, transform, write a new safetensors file atomically."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save_bytes

from covertml.data.base import Dataset
from covertml.defenses.base import Sanitizer
from covertml.errors import ConfigError
from covertml.models.files import load_model, read_tensors
from covertml.paths import atomic_write


@dataclass(frozen=True)
class SanitizeResult:
    """What a sanitizer changed in a model file.

    Attributes:
        method: Sanitizer name.
        options: Its options.
        input: File read (left untouched).
        output: File written.
        tensors_changed: Tensors with at least one value changed.
        values: Floating-point values in the model.
        values_changed: Of those, how many changed.
        mean_abs_change: Mean absolute change over all floating-point values.
    """

    method: str
    options: dict[str, Any]
    input: str
    output: str
    tensors_changed: int
    values: int
    values_changed: int
    mean_abs_change: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def sanitize_state(
    sanitizer: Sanitizer,
    state: dict[str, torch.Tensor],
    *,
    seed: int = 0,
    dataset: Dataset | None = None,
    path: str | os.PathLike[str] = "",
) -> dict[str, torch.Tensor]:
    """Sanitized copy of ``state``; retraining sanitizers rebuild the model from ``path``."""
    if not sanitizer.needs_data:
        return sanitizer.apply(state, seed=seed)
    loaded = load_model(path)
    clean = sanitizer.sanitize(loaded.model, seed=seed, dataset=dataset)
    return {k: v.detach().contiguous() for k, v in clean.state_dict().items()}


def sanitize_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    sanitizer: Sanitizer,
    *,
    seed: int = 0,
    dataset: Dataset | None = None,
    overwrite: bool = False,
) -> SanitizeResult:
    """Writes a sanitized copy of model file ``src`` to ``dst`` (never over ``src``).

    The metadata is kept, with a ``sanitized`` entry appended that names the method, its
    options and the seed. The output is written to a temporary file and renamed into place.

    Example:
        >>> import pathlib, tempfile
        >>> from covertml.defenses import create_sanitizer
        >>> from covertml.models import create_model, save_model
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = save_model(create_model("mlp", input_shape=(1, 8, 8), num_classes=10), d / "m.st")
        >>> r = sanitize_file(d / "m.st", d / "clean.st", create_sanitizer("lsb-randomize"))
        >>> r.values_changed > 0.99 * r.values
        True
    """
    source, target = Path(src), Path(dst)
    if target.resolve() == source.resolve():
        raise ConfigError(
            f"output {target} is the input file; sanitizing never overwrites its input",
            fix="choose another output path",
        )
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists", fix="choose another path or pass --overwrite")
    state, metadata = read_tensors(source)
    if sanitizer.needs_data and dataset is None:
        raise ConfigError(
            f"sanitizer {sanitizer.name!r} retrains the model on the owner's data",
            fix="pass --dataset NAME (and --data-dir DIR)",
        )
    clean = sanitize_state(sanitizer, state, seed=seed, dataset=dataset, path=source)
    history = json.loads(metadata.get("sanitized", "[]"))
    history.append({"method": sanitizer.name, "options": sanitizer.options(), "seed": seed})
    meta = {**metadata, "sanitized": json.dumps(history)}
    with atomic_write(target) as handle:
        handle.write(st_save_bytes(clean, metadata=meta))
    values = changed = tensors = 0
    total_change = 0.0
    for key, before in state.items():
        if not before.is_floating_point():
            continue
        diff = (clean[key].to(torch.float64) - before.to(torch.float64)).abs()
        n = int((diff > 0).sum())
        values += before.numel()
        changed += n
        tensors += n > 0
        total_change += float(diff.sum())
    return SanitizeResult(
        method=sanitizer.name,
        options=sanitizer.options(),
        input=str(source),
        output=str(target),
        tensors_changed=tensors,
        values=values,
        values_changed=changed,
        mean_abs_change=total_change / max(values, 1),
    )
