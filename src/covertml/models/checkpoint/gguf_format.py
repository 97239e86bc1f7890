"""GGUF files (llama.cpp): plain-typed tensors read in place, quantized ones listed as skipped.

GGUF stores each tensor's dimensions innermost first; here shapes are outermost first, as
torch has them. F32, F16, BF16, F64 and I8 to I64 tensors are read straight from the file
at their byte offsets (GGUF is little-endian; big-endian files are refused). Quantized
tensors (Q8_0, Q4_K, ...) hold block-scaled integers, not floats with mantissa bits, so
they are listed in :attr:`Checkpoint.skipped` and copied unchanged when the file is written
back. The metadata is the string form of every key-value field but the ``GGUF.*`` header;
a ``covertml.sanitized`` field is shown as ``sanitized``, the key covertml keeps its
sanitizing history under.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFValueType

from covertml.errors import ModelFileError
from covertml.models.checkpoint.base import Checkpoint, TensorInfo
from covertml.models.checkpoint.write import Transform

#: GGUF tensor types covertml reads as numbers, with their torch dtype names.
GGUF_DTYPES: dict[GGMLQuantizationType, str] = {
    GGMLQuantizationType.F32: "float32",
    GGMLQuantizationType.F16: "float16",
    GGMLQuantizationType.BF16: "bfloat16",
    GGMLQuantizationType.F64: "float64",
    GGMLQuantizationType.I8: "int8",
    GGMLQuantizationType.I16: "int16",
    GGMLQuantizationType.I32: "int32",
    GGMLQuantizationType.I64: "int64",
}
#: Arrays longer than this are summarized in the metadata (``[151936 STRING values]``).
MAX_METADATA_ARRAY = 1024
SANITIZED_KEY = "covertml.sanitized"
_FIX = "re-download or re-convert the file"

KV = tuple[Any, GGUFValueType, GGUFValueType | None]


def _reader(path: Path) -> gguf.GGUFReader:
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # ValueError, IndexError, KeyError... for corrupt headers
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise ModelFileError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {first})", fix=_FIX
        ) from None
    if reader.endianess == gguf.GGUFEndian.BIG:
        raise ModelFileError(
            f"{path} is a big-endian GGUF file, which covertml does not read",
            fix="convert it to a little-endian GGUF or to safetensors",
        )
    return reader


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _scalar(part: np.ndarray[Any, Any]) -> Any:
    value = part[0]
    if part.dtype == np.float32:
        return float(str(value))  # the shortest decimal of the float32, not of its double
    return value.item()


def _describe(field: gguf.ReaderField) -> str:
    """The string form of one key-value field (strings as they are, the rest as JSON)."""
    kind = field.types[0]
    if kind == GGUFValueType.STRING:
        return _text(field.parts[field.data[0]].tobytes())
    if kind != GGUFValueType.ARRAY:
        return json.dumps(_scalar(field.parts[field.data[0]]))
    item = GGUFValueType(int(field.parts[3][0]))
    if len(field.data) > MAX_METADATA_ARRAY or item == GGUFValueType.ARRAY:
        return f"[{int(field.parts[4][0])} {item.name} values]"
    if item == GGUFValueType.STRING:
        return json.dumps([_text(field.parts[i].tobytes()) for i in field.data])
    return json.dumps([_scalar(field.parts[i]) for i in field.data])


def _kv(field: gguf.ReaderField, path: Path) -> KV:
    """One key-value field as ``GGUFWriter.add_key_value`` takes it (strings as bytes)."""
    kind = field.types[0]
    if kind == GGUFValueType.STRING:
        return field.parts[field.data[0]].tobytes(), kind, None
    if kind != GGUFValueType.ARRAY:
        return field.parts[field.data[0]][0].item(), kind, None
    item = GGUFValueType(int(field.parts[3][0]))
    if item == GGUFValueType.ARRAY or not field.data:
        raise ModelFileError(
            f"{path}: field {field.name} is an empty or nested array, which covertml cannot "
            "write back",
            fix="convert the model to safetensors and sanitize that",
        )
    if item == GGUFValueType.STRING:
        return [field.parts[i].tobytes() for i in field.data], kind, item
    values = np.concatenate([field.parts[i] for i in field.data]).tolist()
    return values, kind, item


def open_gguf(path: Path) -> Checkpoint:
    """A checkpoint over a GGUF file's tensors (format ``"gguf"``).

    Raises:
        ModelFileError: A corrupt, truncated or big-endian file.
    """
    reader = _reader(path)
    size = path.stat().st_size
    infos: dict[str, TensorInfo] = {}
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        if t.data_offset + t.n_bytes > size:
            raise ModelFileError(
                f"{path} is truncated: tensor {t.name} ends at byte "
                f"{t.data_offset + t.n_bytes:,} but the file has {size:,}",
                fix=_FIX,
            )
        kind = GGMLQuantizationType(t.tensor_type)
        dtype = GGUF_DTYPES.get(kind)
        skip = None
        if dtype is None:
            skip = (
                f"quantized GGUF type {kind.name}: its values are block-scaled integers, not "
                "floats with mantissa bits; covertml does not dequantize"
            )
        infos[t.name] = TensorInfo(
            t.name, dtype or kind.name, shape, str(path), int(t.data_offset), int(t.n_bytes), skip
        )
    meta: dict[str, str] = {}
    for name, field in reader.fields.items():
        if not name.startswith("GGUF."):
            meta["sanitized" if name == SANITIZED_KEY else name] = _describe(field)
    extra = {
        "alignment": int(reader.alignment),
        "version": int(reader.fields["GGUF.version"].parts[0][0]),
        "types": {t.name: GGMLQuantizationType(t.tensor_type).name for t in reader.tensors},
    }
    return Checkpoint(str(path), "gguf", infos, meta, (str(path),), extra)


def _tensor_bytes(values: torch.Tensor) -> np.ndarray[Any, Any]:
    flat = values.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy()


def write_gguf(
    ck: Checkpoint,
    target: Path,
    transform: Transform,
    *,
    metadata: dict[str, str],
) -> None:
    """Writes ``ck``'s GGUF file to ``target`` with every readable tensor transformed.

    The copy has the input's key-value fields (same order and types) and alignment, plus
    each ``covertml.*`` key of ``metadata`` as a string (``sanitized`` as
    ``covertml.sanitized``), replacing a field of that name; then the tensors in their
    order and types, quantized ones byte for byte. Tensors are written one at a time to a
    temporary file next to ``target``, which is renamed over ``target`` at the end.

    Raises:
        ModelFileError: The file changed since it was opened, or it has a field GGUFWriter
            cannot write (empty or nested arrays).
        ValueError: ``transform`` changed a tensor's dtype or size.
    """
    source = Path(ck.path)
    reader = _reader(source)
    if [t.name for t in reader.tensors] != list(ck.infos):
        raise ModelFileError(f"{source} changed since it was opened", fix="open it again")
    kvs: dict[str, KV] = {}
    for name, field in reader.fields.items():
        if not name.startswith("GGUF."):
            kvs[name] = _kv(field, source)
    for key, value in metadata.items():
        name = SANITIZED_KEY if key == "sanitized" else key
        if name.startswith("covertml."):
            kvs[name] = (str(value).encode("utf-8"), GGUFValueType.STRING, None)
    writer = gguf.GGUFWriter(None, arch="")  # an empty arch adds no field; all are copied
    writer.data_alignment = int(reader.alignment)
    for name, (value, kind, item) in kvs.items():
        writer.add_key_value(name, value, kind, sub_type=item)
    for t in reader.tensors:
        info = ck.infos[t.name]
        writer.add_tensor_info(
            t.name, info.shape, np.dtype(np.float32), int(t.n_bytes), raw_dtype=t.tensor_type
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer.write_header_to_file(Path(tmp))
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in reader.tensors:
            info = ck.infos[t.name]
            if info.skip is not None:
                writer.write_tensor_data(t.data.reshape(-1).view(np.uint8))
                continue
            values = ck[t.name]
            new = transform(info, values)
            if new.dtype != values.dtype or new.numel() != values.numel():
                raise ValueError(f"transform changed {info.name}'s dtype or size")
            writer.write_tensor_data(_tensor_bytes(new))
        assert writer.fout is not None
        writer.flush()
        os.fsync(writer.fout[0].fileno())
        writer.close()
        os.replace(tmp, target)
    except BaseException:
        writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
