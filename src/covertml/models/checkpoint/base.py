"""A checkpoint as a lazy mapping from tensor names to tensors.

A :class:`Checkpoint` knows every tensor's name, dtype, shape and where its bytes lie before
any of them is read; a tensor is read from disk when it is looked up, and nothing is kept,
so a scan that visits tensors one at a time holds at most one tensor in memory. Tensors of
types covertml cannot read as numbers (quantized GGUF blocks, say) are listed in
:attr:`Checkpoint.skipped` with the reason, not silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from covertml.errors import ModelFileError

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class TensorInfo:
    """What a checkpoint says about one tensor, before it is read.

    Attributes:
        name: Tensor name.
        dtype: torch dtype name (``"bfloat16"``), or the file's own type name for types
            torch has no dtype for (``"Q4_K"``).
        shape: Shape, outermost first (as torch has it).
        file: The file that holds it (empty for tensors held in memory).
        offset: Absolute byte offset of its data in ``file`` (``None`` when its bytes
            cannot be addressed directly, as in pickles).
        nbytes: Bytes of its data.
        skip: Why it cannot be read as numbers (``None`` when it can).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str = ""
    offset: int | None = None
    nbytes: int = 0
    skip: str | None = None

    @property
    def numel(self) -> int:
        """Number of values."""
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def is_floating_point(self) -> bool:
        """Whether it reads as a torch floating-point tensor."""
        return self.skip is None and self.dtype in {"float64", "float32", "float16", "bfloat16"}

    @property
    def torch_dtype(self) -> torch.dtype:
        """Its torch dtype (a :class:`KeyError` for foreign types)."""
        return TORCH_DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "file": self.file,
            "skip": self.skip,
        }


def info_of(name: str, tensor: torch.Tensor) -> TensorInfo:
    """The :class:`TensorInfo` of an in-memory tensor."""
    return TensorInfo(
        name,
        dtype_name(tensor.dtype),
        tuple(tensor.shape),
        nbytes=tensor.numel() * tensor.element_size(),
    )


def read_raw(
    info: TensorInfo,
    *,
    start: int = 0,
    count: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reads values ``[start, start + count)`` of a raw-addressed tensor (flat) from its file.

    One ``readinto`` into a fresh buffer, or into the front of ``out`` (a ``uint8`` tensor
    reused across reads, so streaming allocates nothing per chunk; the result is then a
    view of it): nothing else of the file is read or mapped.
    """
    if info.offset is None:
        raise ValueError(f"{info.name} has no byte offset")
    dtype = info.torch_dtype
    item = torch.empty((), dtype=dtype).element_size()
    n = info.numel - start if count is None else max(0, min(count, info.numel - start))
    if out is not None and out.dtype == torch.uint8 and out.numel() >= n * item:
        buf: memoryview | bytearray = out[: n * item].numpy().data
    else:
        buf = bytearray(n * item)
    if n:
        with open(info.file, "rb") as handle:
            handle.seek(info.offset + start * item)
            got = handle.readinto(buf)
        if got != len(buf):
            raise ModelFileError(
                f"{info.file} is truncated: tensor {info.name} ends past the end of the file",
                fix="re-download or re-export the file",
            )
        flat = torch.frombuffer(buf, dtype=torch.uint8).view(dtype)
    else:
        flat = torch.empty(0, dtype=dtype)
    if np.little_endian is False:  # pragma: no cover - the file is little-endian
        flat = torch.from_numpy(flat.numpy().byteswap())
    return flat


Loader = Callable[[TensorInfo], torch.Tensor]


@dataclass(eq=False)
class Checkpoint(Mapping[str, torch.Tensor]):
    """A model checkpoint whose tensors are read on access (see the module docstring).

    Iteration yields the readable tensors in file order (shard by shard, then by position
    in the file), which is the order an attacker writing the file saw.

    Attributes:
        path: What was opened (a file, a directory or an index file).
        format: ``safetensors``, ``safetensors-sharded``, ``pickle``, ``pickle-sharded``,
            ``onnx``, ``gguf`` or ``memory``.
        infos: Every tensor, readable or not, in file order.
        metadata: String metadata (safetensors ``__metadata__``, GGUF key-values, ...).
        files: The files the tensors lie in, in order.
        extra: Format-specific layout (the shard index, for writers).
        loader: Reads one tensor (default: raw reads at each tensor's offset).

    Example:
        >>> import torch
        >>> ck = Checkpoint.from_tensors({"w": torch.ones(2, 3, dtype=torch.bfloat16)})
        >>> ck.infos["w"].dtype, ck["w"].shape, list(ck)
        ('bfloat16', torch.Size([2, 3]), ['w'])
    """

    path: str
    format: str
    infos: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    loader: Loader | None = None

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, torch.Tensor], *, metadata: dict[str, str] | None = None
    ) -> Checkpoint:
        """A checkpoint over tensors already in memory."""
        held = dict(tensors)
        infos = {k: info_of(k, v) for k, v in held.items()}
        return cls("(memory)", "memory", infos, dict(metadata or {}), loader=lambda i: held[i.name])

    @property
    def skipped(self) -> dict[str, str]:
        """Tensors that cannot be read as numbers, with the reason."""
        return {k: i.skip for k, i in self.infos.items() if i.skip is not None}

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data."""
        return sum(i.nbytes for i in self.infos.values())

    @property
    def num_values(self) -> int:
        """Values in the readable tensors."""
        return sum(i.numel for i in self.infos.values() if i.skip is None)

    def __iter__(self) -> Iterator[str]:
        return (k for k, i in self.infos.items() if i.skip is None)

    def __len__(self) -> int:
        return sum(1 for i in self.infos.values() if i.skip is None)

    def __contains__(self, key: object) -> bool:
        info = self.infos.get(key) if isinstance(key, str) else None
        return info is not None and info.skip is None

    def __getitem__(self, key: str) -> torch.Tensor:
        info = self.infos.get(key)
        if info is None or info.skip is not None:
            raise KeyError(key)
        if self.loader is not None:
            return self.loader(info)
        return read_raw(info).reshape(info.shape)

    def read_range(
        self, key: str, start: int, count: int, *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Values ``[start, start + count)`` of tensor ``key``, flat, reading only those.

        ``out``: a ``uint8`` buffer to read into where the tensor lies raw in its file
        (see :func:`read_raw`).
        """
        info = self.infos[key]
        if self.loader is None and info.offset is not None:
            return read_raw(info, start=start, count=count, out=out)
        return self[key].reshape(-1)[start : start + count].clone()


def describe(tensors: Mapping[str, torch.Tensor]) -> dict[str, TensorInfo]:
    """The :class:`TensorInfo` of every tensor, without reading a lazy checkpoint's data.

    Example:
        >>> describe({"b": torch.zeros(3)})["b"].shape
        (3,)
    """
    if isinstance(tensors, Checkpoint):
        return {k: i for k, i in tensors.infos.items() if i.skip is None}
    return {k: info_of(k, v) for k, v in tensors.items()}


def read_range(
    tensors: Mapping[str, torch.Tensor], key: str, start: int, count: int
) -> torch.Tensor:
    """Values ``[start, start + count)`` of ``tensors[key]``, flat (lazy for checkpoints)."""
    if isinstance(tensors, Checkpoint):
        return tensors.read_range(key, start, count)
    return tensors[key].detach().reshape(-1)[start : start + count]
