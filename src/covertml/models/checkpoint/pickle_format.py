"""Pickle-based PyTorch checkpoints (``.bin``, ``.pt``, ``.pth``, ``.ckpt``), single or sharded.

Files are read with ``torch.load(weights_only=True)``, which refuses anything but tensors and
plain containers, and memory-mapped where the file allows it (the zip format of
``torch.save`` since PyTorch 1.6; legacy raw pickles are read whole). A file holds a state
dict (``{name: tensor}``), or a dict with a ``"state_dict"`` key and optional string
``"metadata"``. A sharded checkpoint is a ``*.bin.index.json`` (``weight_map``) beside its
shards; at most one shard is loaded at a time.

Tensors returned by a pickle checkpoint are those ``torch.load`` returned (memory-mapped
copy-on-write, so the file never changes): do not modify them in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from covertml.errors import ModelFileError
from covertml.models.checkpoint import safetensors_format as stf
from covertml.models.checkpoint.base import TORCH_DTYPES, Checkpoint, TensorInfo, dtype_name

_FIX = "convert it to safetensors"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else ""


def load_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (in the file's order) and string metadata of one pickle-based file.

    Raises:
        ModelFileError: The file cannot be loaded with ``weights_only=True`` (corrupt, or it
            holds objects other than tensors), or it is not a state dict of tensors.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.pt"
        >>> torch.save({"state_dict": {"w": torch.ones(2)}, "metadata": {"a": 1}}, p)
        >>> tensors, meta = load_state_dict(p)
        >>> list(tensors), meta
        (['w'], {'a': '1'})
    """
    try:
        with open(path, "rb") as handle:
            zipped = handle.read(2) == b"PK"  # mmap needs the zip format
        obj: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as exc:  # torch raises many types for bad or unsafe pickles
        raise ModelFileError(
            f"{path} could not be read safely ({type(exc).__name__}: {_first_line(exc)})",
            fix=_FIX,
        ) from None
    meta: Any = {}
    if isinstance(obj, dict) and "state_dict" in obj:
        meta = obj.get("metadata") or {}
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelFileError(
            f"{path} does not hold a state dict of tensors (it holds a {type(obj).__name__})",
            fix="save model.state_dict()",
        )
    if not isinstance(meta, dict):
        meta = {}
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, str] = {}
    _flatten(obj, "", tensors, scalars, path)
    if not tensors:
        raise ModelFileError(f"{path} holds no tensors", fix="save model.state_dict()")
    return tensors, {**scalars, **{str(k): str(v) for k, v in meta.items()}}


def _flatten(
    obj: Any, prefix: str, tensors: dict[str, torch.Tensor], scalars: dict[str, str], path: Path
) -> None:
    """A training checkpoint's nested dicts and lists, as dotted tensor names.

    ``{"model": state_dict, "optimizer": {...}, "epoch": 3}`` -- the usual checkpoint of a
    training loop -- gives ``model.*`` and ``optimizer.state.0.exp_avg``-style tensors (all
    of them are in the file, so all are scanned) and ``epoch`` as metadata.
    """
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            tensors[name] = value
        elif isinstance(value, (dict, list, tuple)):
            _flatten(value, name + ".", tensors, scalars, path)
        elif value is None or isinstance(value, (int, float, bool, str)):
            scalars[name] = str(value)
        else:
            raise ModelFileError(
                f"{path} does not hold a state dict of tensors "
                f"({name!r} is a {type(value).__name__})",
                fix="save model.state_dict()",
            )


def _info(name: str, tensor: torch.Tensor, file: Path) -> TensorInfo:
    dtype = dtype_name(tensor.dtype)
    skip = None if dtype in TORCH_DTYPES else f"torch dtype {dtype} is not supported"
    return TensorInfo(
        name,
        dtype,
        tuple(tensor.shape),
        str(file),
        None,
        tensor.numel() * tensor.element_size(),
        skip,
    )


def open_pickle(path: Path) -> Checkpoint:
    """A checkpoint over one pickle-based PyTorch file (format ``"pickle"``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.bin"
        >>> torch.save({"b": torch.zeros(3), "a": torch.ones(2, dtype=torch.float16)}, p)
        >>> ck = open_pickle(p)
        >>> ck.format, list(ck), ck.infos["a"].dtype, ck["a"].tolist()
        ('pickle', ['b', 'a'], 'float16', [1.0, 1.0])
    """
    tensors, meta = load_state_dict(path)
    infos = {name: _info(name, t, path) for name, t in tensors.items()}

    def load(info: TensorInfo) -> torch.Tensor:
        return tensors[info.name].detach()

    return Checkpoint(str(path), "pickle", infos, meta, (str(path),), loader=load)


class _OneShard:
    """Loads tensors of a sharded checkpoint, keeping only the last shard used."""

    def __init__(self) -> None:
        self.file: str | None = None
        self.tensors: dict[str, torch.Tensor] = {}

    def __call__(self, info: TensorInfo) -> torch.Tensor:
        if info.file != self.file:
            self.file, self.tensors = None, {}  # drop the old shard before loading the next
            self.tensors, _ = load_state_dict(Path(info.file))
            self.file = info.file
        tensor = self.tensors.get(info.name)
        if tensor is None:
            raise ModelFileError(
                f"{info.file} no longer holds tensor {info.name}",
                fix="the shard changed after it was opened; open the checkpoint again",
            )
        return tensor.detach()


def open_pickle_sharded(index: Path) -> Checkpoint:
    """A checkpoint over the pickle shards of a ``*.bin.index.json`` (``"pickle-sharded"``).

    Each shard is loaded once to list its tensors, then dropped; reading tensors later keeps
    at most one shard loaded (the one read last).

    Raises:
        ModelFileError: A malformed index, a missing shard, an unreadable shard, or an index
            that names a tensor its shard does not hold.
    """
    weight_map, index_meta = stf.read_index(index)
    shards = stf.shard_order(index, weight_map)
    infos: dict[str, TensorInfo] = {}
    meta: dict[str, str] = {}
    for shard in shards:
        tensors, shard_meta = load_state_dict(shard)
        meta = meta or shard_meta
        for name, tensor in tensors.items():
            if weight_map.get(name) == shard.name:
                infos[name] = _info(name, tensor, shard)
        del tensors
    extra = stf.check_index(index, weight_map, index_meta, infos)
    return Checkpoint(
        str(index),
        "pickle-sharded",
        infos,
        meta,
        tuple(map(str, shards)),
        extra,
        loader=_OneShard(),
    )
