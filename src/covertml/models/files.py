"""Model files: safetensors with the architecture in the string metadata.

Metadata keys (all strings, as safetensors requires):

- ``format``: ``covertml-model/1``
- ``architecture``: JSON ``{"name": ..., "args": {...}}`` -- the registry name and arguments,
  which include ``input_shape`` and ``num_classes``
- ``classes``: JSON list of class names (optional)
- any extra keys the caller passes

Pickle-based files (``.pt``/``.pth``) are refused unless ``allow_pickle=True``, and even then
are read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes
from torch import nn

from covertml.errors import ModelFileError
from covertml.floats import require_format
from covertml.models.registry import ModelSpec, create_model, model_spec
from covertml.paths import atomic_write

FORMAT = "covertml-model/1"
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about its model."""

    spec: ModelSpec
    classes: tuple[str, ...] | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "architecture": self.spec.to_dict(),
            "classes": list(self.classes) if self.classes is not None else None,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model rebuilt from a file, in eval mode, with its :class:`ModelInfo`."""

    model: nn.Module
    info: ModelInfo


def save_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    classes: tuple[str, ...] | list[str] | None = None,
    spec: ModelSpec | None = None,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | str | None = None,
) -> Path:
    """Writes ``model`` to a safetensors file atomically (temp file, then rename).

    Args:
        model: A model from :func:`~covertml.models.create_model`, or any module with ``spec``.
        path: Destination ``.safetensors`` file.
        classes: Class names to record.
        spec: Architecture, for models not built by the registry.
        metadata: Extra string metadata.
        dtype: Store float tensors in this format (``float16``, ``bfloat16``); ``None``
            keeps each tensor's dtype. :func:`load_model` reads them back into the
            architecture's float32.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> from covertml.models import create_model
        >>> m = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
        >>> p = save_model(m, pathlib.Path(tempfile.mkdtemp()) / "m.safetensors")
        >>> load_model(p).info.spec.name
        'mlp'
    """
    spec = spec or model_spec(model)
    meta = {"format": FORMAT, "architecture": spec.to_json()}
    if classes is not None:
        meta["classes"] = json.dumps(list(classes))
    for key, value in (metadata or {}).items():
        if not isinstance(value, str):
            raise TypeError(f"metadata value for {key!r} must be a string")
        meta.setdefault(key, value)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        target_dtype = require_format(dtype).torch_dtype
        tensors = {
            k: v.to(target_dtype) if v.is_floating_point() else v for k, v in tensors.items()
        }
    blob = st_save_bytes(tensors, metadata=meta)
    target = Path(path)
    with atomic_write(target) as handle:
        handle.write(blob)
    return target


def _check_header(path: Path, data: bytes) -> None:
    if len(data) < 8:
        raise ModelFileError(
            f"{path} is truncated ({len(data)} bytes)", fix="re-export or re-download the file"
        )
    if data[:2] == b"PK" or data[:1] == b"\x80":
        raise ModelFileError(
            f"{path} is a pickle-based PyTorch file, which can run code when loaded",
            fix="convert it to safetensors, or pass allow_pickle=True (--allow-pickle) "
            "to read it with torch.load(weights_only=True)",
        )
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > _MAX_HEADER or data[8:9] != b"{":
        raise ModelFileError(
            f"{path} is not a safetensors file (bad header)",
            fix="pass a .safetensors model written by covertml",
        )
    if 8 + header_len > len(data):
        raise ModelFileError(
            f"{path} is truncated: header says {header_len} bytes but the file has {len(data) - 8}",
            fix="re-export or re-download the file",
        )


def read_tensors(
    path: str | os.PathLike[str], *, allow_pickle: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Reads the tensors and string metadata of a model file, with clear errors."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist", fix="check the path")
    data = p.read_bytes()
    if allow_pickle and (data[:2] == b"PK" or data[:1] == b"\x80"):
        return _read_pickle(p)
    _check_header(p, data)
    try:
        tensors = st_load_bytes(data)
        header_len = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f"{p} is corrupt or truncated ({str(exc).splitlines()[0][:120]})",
            fix="re-export or re-download the file",
        ) from None
    metadata = header.get("__metadata__") or {}
    # keep the tensors in file order (where they lie in the file), as the attacker saw them
    stored = sorted(
        (k for k in header if k != "__metadata__" and k in tensors),
        key=lambda k: header[k].get("data_offsets", [0])[0],
    )
    tensors = {k: tensors[k] for k in stored}
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def _read_pickle(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad/unsafe pickles
        raise ModelFileError(
            f"{path} could not be read safely ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120]})",
            fix="convert it to safetensors",
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj:
        meta = obj.get("metadata") or {}
        obj = obj["state_dict"]
    else:
        meta = {}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(
            f"{path} does not hold a state dict of tensors", fix="save model.state_dict()"
        )
    return dict(obj), {str(k): str(v) for k, v in dict(meta).items()}


def read_info(metadata: dict[str, str], *, path: str | os.PathLike[str] = "") -> ModelInfo:
    """Parses covertml metadata into a :class:`ModelInfo`."""
    arch = metadata.get("architecture")
    if arch is None:
        raise ModelFileError(
            f"{path} has no architecture metadata, so covertml cannot rebuild its model",
            fix="save it with covertml.models.save_model (or pass spec=ModelSpec(...))",
        )
    try:
        parsed = json.loads(arch)
        spec = ModelSpec(str(parsed["name"]), dict(parsed["args"]))
        classes = json.loads(metadata["classes"]) if "classes" in metadata else None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(
            f"{path} has malformed architecture metadata ({exc})",
            fix="re-export the model with covertml",
        ) from None
    extra = {k: v for k, v in metadata.items() if k not in {"architecture", "classes"}}
    return ModelInfo(spec, tuple(classes) if classes is not None else None, extra)


def load_model(
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    spec: ModelSpec | None = None,
) -> LoadedModel:
    """Rebuilds a model from a file alone (architecture from its metadata), in eval mode.

    Args:
        path: A safetensors file written by :func:`save_model`.
        allow_pickle: Also accept pickle-based files, read with ``weights_only=True``.
        spec: Architecture to use when the file has none (e.g. a foreign state dict).

    Raises:
        ModelFileError: missing, corrupt, truncated, pickle-based or inconsistent file.
    """
    tensors, metadata = read_tensors(path, allow_pickle=allow_pickle)
    if spec is not None:
        metadata = {**metadata, "architecture": spec.to_json()}
    info = read_info(metadata, path=path)
    try:
        model = create_model(
            info.spec.name,
            input_shape=info.spec.input_shape,
            num_classes=info.spec.num_classes,
            **{k: v for k, v in info.spec.args.items() if k not in {"input_shape", "num_classes"}},
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(
            f"{path} describes a model covertml cannot build ({exc})",
            fix="check the file's architecture metadata",
        ) from None
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in own]
    problems += [
        f"{k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
        for k, v in tensors.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if problems:
        raise ModelFileError(
            f"{path} does not match its architecture ({'; '.join(problems[:3])})",
            fix="the file was edited or saved from another model; re-export it",
        )
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return LoadedModel(model, info)
