"""ONNX models: the graph's initializers as a checkpoint, and a transformed copy written back.

An ONNX file is one protobuf message, so it is parsed whole (external data included) when
opened; each initializer is converted to a torch tensor when looked up (the last one is
kept, so chunked reads of one tensor convert it once). Float initializers (FLOAT, FLOAT16,
BFLOAT16, DOUBLE) and integer and boolean ones read as torch tensors; other element types
(strings, float8, 4-bit integers, ...) are listed as skipped. Only the main graph's
initializers are read, not those of subgraphs. The model's ``metadata_props`` are the
checkpoint's metadata.

The copy is the same model with each readable initializer's data replaced, and the
metadata replaced; protobuf cannot serialize more than 2 GB, so larger models cannot be
written back as ONNX.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

from covertml.errors import ModelFileError
from covertml.models.checkpoint.base import Checkpoint, TensorInfo
from covertml.models.checkpoint.write import Transform
from covertml.paths import atomic_write

#: ONNX element types covertml reads, with their torch dtype names.
ONNX_DTYPES: dict[int, str] = {
    TensorProto.FLOAT: "float32",
    TensorProto.FLOAT16: "float16",
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.DOUBLE: "float64",
    TensorProto.INT64: "int64",
    TensorProto.INT32: "int32",
    TensorProto.INT16: "int16",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.BOOL: "bool",
}
_ITEM = {
    "float64": 8,
    "int64": 8,
    "float32": 4,
    "int32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int16": 2,
}
_DATA_FIELDS = (
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
    "raw_data",
)
PROTOBUF_LIMIT = 2**31 - 1
_FIX = "re-export the model, or convert it to safetensors"


def _load(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path), format="protobuf", load_external_data=True)
    except Exception as exc:  # protobuf DecodeError, missing external data, OSError...
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise ModelFileError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {first})", fix=_FIX
        ) from None
    if not model.HasField("graph"):
        raise ModelFileError(f"{path} is not an ONNX model (it has no graph)", fix=_FIX)
    return model


def _info(init: TensorProto, path: Path) -> TensorInfo:
    shape = tuple(int(d) for d in init.dims)
    dtype = ONNX_DTYPES.get(init.data_type)
    if dtype is None:
        code = TensorProto.DataType.Name(init.data_type)
        skip = f"ONNX element type {code} is not supported"
        return TensorInfo(init.name, code, shape, str(path), None, len(init.raw_data), skip)
    nbytes = int(np.prod(shape, dtype=np.int64)) * _ITEM.get(dtype, 1)
    return TensorInfo(init.name, dtype, shape, str(path), None, nbytes)


def to_torch(init: TensorProto) -> torch.Tensor:
    """The values of a readable initializer as a torch tensor (a copy, exact bit for bit).

    Example:
        >>> t = onnx.helper.make_tensor("w", TensorProto.BFLOAT16, [2], [1.5, -2.0])
        >>> to_torch(t).dtype, to_torch(t).tolist()
        (torch.bfloat16, [1.5, -2.0])
    """
    shape = tuple(int(d) for d in init.dims)
    arr = numpy_helper.to_array(init)
    if init.data_type == TensorProto.BFLOAT16:
        # onnx gives ml_dtypes.bfloat16 (older versions: float32 holding bfloat16 values)
        if arr.dtype.itemsize == 2:
            bits = np.ascontiguousarray(arr).view(np.uint16)
        else:
            wide = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
            bits = (wide >> np.uint32(16)).astype(np.uint16)
        out = torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16)
        return out.reshape(shape)
    return torch.from_numpy(np.array(arr, copy=True)).reshape(shape)


def open_onnx(path: Path) -> Checkpoint:
    """A checkpoint over the initializers of an ONNX model (format ``"onnx"``).

    Raises:
        ModelFileError: The file is not a parseable ONNX model, its external data is
            missing, or two initializers share a name.
    """
    model = _load(path)
    inits = {init.name: init for init in model.graph.initializer}
    if len(inits) != len(model.graph.initializer):
        raise ModelFileError(f"{path} has two initializers with one name", fix=_FIX)
    infos = {name: _info(init, path) for name, init in inits.items()}
    meta = {p.key: p.value for p in model.metadata_props}
    last: dict[str, torch.Tensor] = {}

    def load(info: TensorInfo) -> torch.Tensor:
        if info.name not in last:
            last.clear()
            last[info.name] = to_torch(inits[info.name])
        return last[info.name]

    extra = {"ir_version": int(model.ir_version), "producer": model.producer_name}
    return Checkpoint(str(path), "onnx", infos, meta, (str(path),), extra, loader=load)


def _set_values(init: TensorProto, values: torch.Tensor) -> None:
    flat = values.detach().to("cpu").contiguous().reshape(-1)
    for name in _DATA_FIELDS:
        init.ClearField(name)
    init.raw_data = flat.view(torch.uint8).numpy().tobytes()  # little-endian, as ONNX wants


def write_onnx(
    ck: Checkpoint,
    target: Path,
    transform: Transform,
    *,
    metadata: dict[str, str],
) -> None:
    """Writes ``ck``'s model to ``target`` with each readable initializer transformed.

    The model is read again from ``ck.path``; skipped initializers, the graph and every
    other field are kept as they are; ``metadata_props`` becomes ``metadata``.

    Raises:
        ModelFileError: The model changed since it was opened, or the copy would exceed
            protobuf's 2 GB limit.
        ValueError: ``transform`` changed a tensor's dtype or size.
    """
    source = Path(ck.path)
    model = _load(source)
    for init in model.graph.initializer:
        info = ck.infos.get(init.name)
        if info is None or info.skip is not None:
            continue
        if ONNX_DTYPES.get(init.data_type) != info.dtype or tuple(init.dims) != info.shape:
            raise ModelFileError(
                f"{source} changed since it was opened (initializer {init.name})",
                fix="open it again",
            )
        values = ck[init.name]
        new = transform(info, values)
        if new.dtype != values.dtype or new.numel() != values.numel():
            raise ValueError(f"transform changed {info.name}'s dtype or size")
        _set_values(init, new)
    onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
    size = model.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise ModelFileError(
            f"the copy of {source} would be {size:,} bytes, past protobuf's 2 GB limit for "
            "one ONNX file",
            fix="convert the model to safetensors and write that instead",
        )
    with atomic_write(os.fspath(target)) as handle:
        handle.write(model.SerializeToString())
