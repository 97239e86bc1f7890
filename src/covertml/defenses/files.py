"""Sanitizing checkpoints: read lazily, transform tensor by tensor, write in the same layout.

Any checkpoint :func:`~covertml.models.checkpoint.open_checkpoint` reads can be sanitized:
one safetensors file, a sharded directory (sharded in, sharded out with a matching index),
pickles (with ``allow_pickle``; written as safetensors), ONNX and GGUF. Each tensor keeps
its dtype, name and place; the metadata is kept with a ``sanitized`` entry appended. Tensors
are streamed one at a time -- element-wise sanitizers in chunks of a tensor -- so memory is
bounded by the largest tensor (or a chunk), never by the model. Sanitizers that retrain
(``finetune``) rebuild a covertml model from its file instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covertml.data.base import Dataset
from covertml.defenses.base import SEED_TAG, Sanitizer
from covertml.defenses.stream import Tally, WordStream
from covertml.errors import ConfigError
from covertml.floats import float_format
from covertml.models.checkpoint import Checkpoint, TensorInfo, open_checkpoint, write_like
from covertml.models.files import load_model, save_model

CHUNK = 1 << 23  # values per chunk for element-wise sanitizers


@dataclass(frozen=True)
class SanitizeResult:
    """What a sanitizer changed in a checkpoint.

    Attributes:
        method: Sanitizer name.
        options: Its options.
        input: Checkpoint read (left untouched).
        output: File or directory written.
        tensors_changed: Tensors with at least one value changed.
        values: Floating-point values in the model.
        values_changed: Of those, how many changed.
        mean_abs_change: Mean absolute change over all floating-point values.
        files: Every file written.
        skipped: Tensors left as they were because they cannot be read as numbers.
        bits: Low bits rewritten per float format (low-bit sanitizers).
    """

    method: str
    options: dict[str, Any]
    input: str
    output: str
    tensors_changed: int
    values: int
    values_changed: int
    mean_abs_change: float
    files: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    bits: dict[str, int] = field(default_factory=dict)

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


def _check_paths(source: Path, target: Path, overwrite: bool) -> None:
    if target.resolve() == source.resolve():
        raise ConfigError(
            f"output {target} is the input; sanitizing never overwrites its input",
            fix="choose another output path",
        )
    if target.exists() and not overwrite and not (target.is_dir() and source.is_file()):
        raise ConfigError(f"{target} already exists", fix="choose another path or pass --overwrite")


def _retrain(
    source: Path, target: Path, sanitizer: Sanitizer, *, seed: int, dataset: Dataset | None
) -> tuple[Checkpoint, Checkpoint, tuple[str, ...]]:
    if dataset is None:
        raise ConfigError(
            f"sanitizer {sanitizer.name!r} retrains the model on the owner's data",
            fix="pass --dataset NAME (and --data-dir DIR)",
        )
    loaded = load_model(source)
    clean = sanitizer.sanitize(loaded.model, seed=seed, dataset=dataset)
    before = open_checkpoint(source)
    history = json.loads(before.metadata.get("sanitized", "[]"))
    history.append({"method": sanitizer.name, "options": sanitizer.options(), "seed": seed})
    extra = {k: v for k, v in before.metadata.items() if k not in {"architecture", "classes"}}
    extra["sanitized"] = json.dumps(history)
    extra.pop("format", None)
    save_model(clean, target, classes=loaded.info.classes, spec=loaded.info.spec, metadata=extra)
    return before, open_checkpoint(target), (str(target),)


def sanitize_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    sanitizer: Sanitizer,
    *,
    seed: int = 0,
    dataset: Dataset | None = None,
    overwrite: bool = False,
    allow_pickle: bool = False,
) -> SanitizeResult:
    """Writes a sanitized copy of checkpoint ``src`` to ``dst`` (never over ``src``).

    Args:
        src: A model file, shard index or checkpoint directory.
        dst: Output file (or directory, for sharded checkpoints; an existing directory
            receives a single-file checkpoint under the input's name).
        sanitizer: From :func:`~covertml.defenses.create_sanitizer`.
        seed: Seed of random bits and noise.
        dataset: The owner's data, for sanitizers that retrain.
        overwrite: Replace an existing output.
        allow_pickle: Also read pickle-based input (``torch.load(weights_only=True)``).

    Example:
        >>> import pathlib, tempfile
        >>> from covertml.defenses import create_sanitizer
        >>> from covertml.models import create_model, save_model
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = save_model(create_model("mlp", input_shape=(1, 8, 8), num_classes=10), d / "m.st")
        >>> r = sanitize_file(d / "m.st", d / "clean.st", create_sanitizer("lsb-randomize"))
        >>> r.values_changed > 0.99 * r.values, r.bits
        (True, {'float32': 16})
    """
    source, target = Path(src), Path(dst)
    _check_paths(source, target, overwrite)
    tally = Tally()
    bits: dict[str, int] = {}
    if sanitizer.needs_data:
        before, after, files = _retrain(source, target, sanitizer, seed=seed, dataset=dataset)
        for name in before:
            if before.infos[name].is_floating_point:
                tally.add(name, before[name], after[name])
        output = str(target)
        skipped: dict[str, str] = {}
    else:
        ck = open_checkpoint(source, allow_pickle=allow_pickle)
        rng = np.random.default_rng([seed, SEED_TAG])
        bits_for = getattr(sanitizer, "bits_for", None)

        chosen = [
            i
            for i in ck.infos.values()
            if sanitizer.selects_kind(floating=i.is_floating_point, ndim=i.ndim)
        ]
        if bits_for is not None:  # checked before anything is written
            for i in chosen:
                if float_format(i.dtype) is None:
                    raise ConfigError(
                        f"tensor {i.name} is {i.dtype}; {sanitizer.name} rewrites float32, "
                        "float16 and bfloat16 words only",
                        fix="convert that tensor to float32 first, or pass --scope weights "
                        "if it is a 1-D buffer",
                    )
                bits[i.dtype] = int(bits_for(i.torch_dtype))

        chunk = CHUNK if sanitizer.elementwise else None
        words: WordStream | None = None
        if chunk is not None and hasattr(sanitizer, "rewrite_words") and chosen:
            size = min(chunk, max(i.numel for i in chosen))
            words = WordStream(sanitizer, rng=rng, tally=tally, size=size)

        def transform(info: TensorInfo, values: torch.Tensor) -> torch.Tensor:
            if not sanitizer.selects_kind(floating=info.is_floating_point, ndim=info.ndim):
                return values
            if words is not None:
                return words(info, values)
            new = sanitizer.transform(values, rng=rng).to(values.dtype).contiguous()
            tally.add(info.name, values, new)
            return new

        history = json.loads(ck.metadata.get("sanitized", "[]"))
        entry: dict[str, Any] = {"method": sanitizer.name, "options": sanitizer.options()}
        if bits:
            entry["bits"] = dict(bits)
        history.append({**entry, "seed": seed})
        meta = {**ck.metadata, "sanitized": json.dumps(history)}
        try:
            written = write_like(
                ck, target, transform, metadata=meta, chunk=chunk, overwrite=overwrite
            )
        finally:
            if words is not None:
                words.close()
        output, files, skipped = written.output, written.files, ck.skipped
    return SanitizeResult(
        method=sanitizer.name,
        options=sanitizer.options(),
        input=str(source),
        output=output,
        tensors_changed=len(tally.changed_in),
        values=tally.values,
        values_changed=tally.changed,
        mean_abs_change=tally.total / max(tally.values, 1),
        files=files,
        skipped=skipped,
        bits=bits,
    )
