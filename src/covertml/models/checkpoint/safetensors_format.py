"""safetensors checkpoints, single files and shards behind an index, read lazily.

Only the header of each file is parsed up front (bounded, validated against the file size,
so a truncated file is found before any tensor is read); each tensor's bytes are read when
it is looked up. A Hugging Face style sharded checkpoint is an index file
(``model.safetensors.index.json``: ``{"metadata": {...}, "weight_map": {name: shard}}``)
beside its shards; every tensor the index names must be in the shard it names.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

from covertml.errors import ModelFileError
from covertml.models.checkpoint.base import Checkpoint, TensorInfo

MAX_HEADER = 100 * 1024 * 1024
ST_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
ST_CODES = {v: k for k, v in ST_DTYPES.items()}
_FIX = "re-download or re-export the file"

log = logging.getLogger(__name__)


def is_safetensors(head: bytes) -> bool:
    """Whether the first bytes of a file look like a safetensors header."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= MAX_HEADER and head[8:9] == b"{"


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The parsed JSON header of a safetensors file and where its data starts."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path} is truncated ({size} bytes)", fix=_FIX)
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise ModelFileError(f"{path} is not a safetensors file (bad header)", fix=_FIX)
        if 8 + n > size:
            raise ModelFileError(
                f"{path} is truncated: its header says {n} bytes but the file has {size - 8}",
                fix=_FIX,
            )
        raw = handle.read(n)
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} has a corrupt header ({str(exc)[:80]})", fix=_FIX) from None
    return header, 8 + n


def open_file(path: Path) -> tuple[list[TensorInfo], dict[str, str]]:
    """The tensors (in file order) and metadata of one safetensors file."""
    header, start = read_header(path)
    size = path.stat().st_size
    meta = header.pop("__metadata__", None) or {}
    infos = []
    for name, entry in header.items():
        try:
            code, shape = entry["dtype"], tuple(int(s) for s in entry["shape"])
            begin, end = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(
                f"{path}: tensor {name!r} has a malformed entry", fix=_FIX
            ) from None
        dtype = ST_DTYPES.get(code)
        skip = None if dtype is not None else f"safetensors dtype {code} is not supported"
        if start + end > size:
            raise ModelFileError(
                f"{path} is truncated: tensor {name} ends at byte {start + end:,} "
                f"but the file has {size:,}",
                fix=_FIX,
            )
        infos.append(
            TensorInfo(name, dtype or code, shape, str(path), start + begin, end - begin, skip)
        )
    infos.sort(key=lambda i: i.offset or 0)
    return infos, {str(k): str(v) for k, v in meta.items()}


def open_single(path: Path) -> Checkpoint:
    """A lazy checkpoint over one safetensors file."""
    infos, meta = open_file(path)
    return Checkpoint(str(path), "safetensors", {i.name: i for i in infos}, meta, (str(path),))


def read_index(index: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The ``weight_map`` and ``metadata`` of a shard index file."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError("empty weight_map")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f"{index} is not a shard index ({type(exc).__name__}: {str(exc)[:60]})",
            fix="pass the checkpoint's *.index.json written by save_pretrained",
        ) from None
    return {str(k): str(v) for k, v in weight_map.items()}, dict(data.get("metadata") or {})


def shard_order(index: Path, weight_map: dict[str, str]) -> list[Path]:
    """The shard files an index names, in name order, each checked to exist."""
    shards = [index.parent / s for s in sorted(set(weight_map.values()))]
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise ModelFileError(
            f"{index} names shard {missing[0]} which is not in {index.parent}"
            + (f" ({len(missing)} shards missing)" if len(missing) > 1 else ""),
            fix="download every shard of the checkpoint",
        )
    return shards


def open_sharded(index: Path) -> Checkpoint:
    """A lazy checkpoint over the shards of a safetensors index."""
    weight_map, index_meta = read_index(index)
    infos: dict[str, TensorInfo] = {}
    meta: dict[str, str] = {}
    shards = shard_order(index, weight_map)
    unlisted: list[str] = []
    shard_meta: dict[str, dict[str, str]] = {}
    for shard in shards:
        found, shard_meta[shard.name] = open_file(shard)
        meta = meta or shard_meta[shard.name]
        for info in found:
            owner = weight_map.get(info.name)
            if owner == shard.name:
                infos[info.name] = info
            else:  # not where the index says: still read, scanned and copied
                key = info.name if owner is None and info.name not in infos else None
                key = key or f"{shard.name}:{info.name}"
                infos[key] = info
                unlisted.append(key)
    extra = check_index(index, weight_map, index_meta, infos)
    extra["shard_metadata"] = shard_meta
    if unlisted:
        log.warning(
            "%s: %d tensors lie in shards the index does not name for them (%s); they are "
            "scanned and copied too",
            index,
            len(unlisted),
            ", ".join(unlisted[:3]),
        )
        extra["unlisted"] = unlisted
    return Checkpoint(
        str(index), "safetensors-sharded", infos, meta, tuple(map(str, shards)), extra
    )


def check_index(
    index: Path,
    weight_map: dict[str, str],
    index_meta: dict[str, Any],
    infos: dict[str, TensorInfo],
) -> dict[str, Any]:
    """Raises unless every tensor the index names was found; the checkpoint's ``extra``."""
    absent = [k for k in weight_map if k not in infos]
    if absent:
        raise ModelFileError(
            f"{index} names tensor {absent[0]} in {weight_map[absent[0]]}, which does not hold "
            f"it ({len(absent)} such tensors)",
            fix="the index and shards come from different checkpoints; re-download them",
        )
    return {"index": str(index), "index_metadata": index_meta, "weight_map": weight_map}


def header_bytes(infos: list[TensorInfo], metadata: dict[str, str]) -> tuple[bytes, list[int]]:
    """A safetensors header for ``infos`` in that order, and each tensor's data offset.

    The header is padded with spaces to a multiple of 8 bytes, as the format recommends.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offsets, pos = [], 0
    for info in infos:
        header[info.name] = {
            "dtype": ST_CODES.get(info.dtype, info.dtype),  # skipped tensors keep their code
            "shape": list(info.shape),
            "data_offsets": [pos, pos + info.nbytes],
        }
        offsets.append(pos)
        pos += info.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offsets


def index_name(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named like a shard index (``*.index.json``)."""
    return str(path).endswith(".index.json")
