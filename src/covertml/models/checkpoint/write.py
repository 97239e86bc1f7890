"""Writing a transformed copy of a checkpoint in the layout it came in, tensor by tensor.

The copy keeps every tensor's name, dtype, shape and order, the metadata (with the caller's
additions) and the layout: one safetensors file stays one file; a sharded checkpoint becomes
a directory with the same shard names and a matching index, and the checkpoint directory's
other files (``config.json``, tokenizer files) are copied beside them. Pickle-based input is
written as safetensors (covertml never writes pickles): ``pytorch_model-00001-of-00002.bin``
becomes ``model-00001-of-00002.safetensors`` under ``model.safetensors.index.json``. ONNX
and GGUF files are written back as ONNX and GGUF.

Nothing is written over the input, and nothing half-written is left: files go to a
temporary name and are renamed into place; a directory is built under a temporary name and
renamed as a whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from covertml.errors import ConfigError, ModelFileError
from covertml.models.checkpoint import safetensors_format as stf
from covertml.models.checkpoint.background import BackgroundWriter
from covertml.models.checkpoint.base import Checkpoint, TensorInfo
from covertml.paths import atomic_write, current_umask

#: ``transform(info, values)``: the new values (same shape and dtype) of a readable tensor,
#: or of a flat chunk of it when the writer streams in chunks. When streaming, ``values``
#: may be a view of a buffer that the next chunk is read into (so it may not be kept), and
#: the result is written on a background thread: a transform that reuses output buffers
#: must rotate ``background.PENDING + 2`` of them.
Transform = Callable[[TensorInfo, torch.Tensor], torch.Tensor]
SIDE_FILE_LIMIT = 64 * 1024 * 1024  # directory files copied beside the shards (configs...)


@dataclass(frozen=True)
class WriteResult:
    """Where a checkpoint copy went.

    Attributes:
        output: The file or directory written.
        files: Every file written, shards and index included.
    """

    output: str
    files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"output": self.output, "files": list(self.files)}


def _chunks(
    ck: Checkpoint, key: str, chunk: int | None, buffer: torch.Tensor | None
) -> Iterator[torch.Tensor]:
    if chunk is None:
        yield ck[key]
        return
    for start in range(0, ck.infos[key].numel, chunk):
        yield ck.read_range(key, start, chunk, out=buffer)


def _tensor_bytes(values: torch.Tensor) -> memoryview:
    flat = values.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy().data)


def _raw_bytes(info: TensorInfo) -> Iterator[bytes]:
    assert info.offset is not None
    with open(info.file, "rb") as handle:
        handle.seek(info.offset)
        left = info.nbytes
        while left:
            piece = handle.read(min(left, 64 << 20))
            if not piece:
                break
            left -= len(piece)
            yield piece


def write_safetensors_file(
    ck: Checkpoint,
    infos: list[TensorInfo],
    target: Path,
    transform: Transform,
    *,
    metadata: dict[str, str],
    chunk: int | None = None,
    buffer: torch.Tensor | None = None,
) -> None:
    """One safetensors file of ``infos`` (in that order), transformed, written atomically.

    ``buffer``: the read buffer of :func:`read_buffer` (made here if not given).
    """
    header, _ = stf.header_bytes(infos, metadata)
    keys = {id(info): key for key, info in ck.infos.items()}  # "shard:name" for duplicates
    if buffer is None:
        buffer = read_buffer(infos, chunk)
    with atomic_write(target) as handle, BackgroundWriter(handle) as writer:
        writer.write(header)
        for info in infos:
            if info.skip is not None:
                for piece in _raw_bytes(info):
                    writer.write(piece)
                continue
            for values in _chunks(ck, keys[id(info)], chunk, buffer):
                new = transform(info, values)
                if new.dtype != values.dtype or new.numel() != values.numel():
                    raise ValueError(f"transform changed {info.name}'s dtype or size")
                data = _tensor_bytes(new)
                if buffer is not None and _inside(new, buffer):  # the next read reuses it
                    data = memoryview(bytes(data))
                writer.write(data)


def read_buffer(infos: Iterable[TensorInfo], chunk: int | None) -> torch.Tensor | None:
    """One buffer that every chunk of ``infos`` is read into (``None`` without chunks)."""
    readable = [i for i in infos if i.skip is None]
    if chunk is None or not readable:
        return None
    widest = max(torch.empty((), dtype=i.torch_dtype).element_size() for i in readable)
    return torch.empty(min(chunk, max(i.numel for i in readable)) * widest, dtype=torch.uint8)


def _inside(tensor: torch.Tensor, buffer: torch.Tensor) -> bool:
    start, end = buffer.data_ptr(), buffer.data_ptr() + buffer.numel()
    return start <= tensor.data_ptr() < end


@contextlib.contextmanager
def _atomic_dir(target: Path, *, overwrite: bool) -> Iterator[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; a release is not
    try:
        yield tmp
        if target.exists():
            if not overwrite:
                raise ConfigError(f"{target} already exists", fix="choose another path")
            old = target.with_name(f".{target.name}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_side_files(ck: Checkpoint, out: Path, written: set[str]) -> list[str]:
    source = Path(ck.path).parent
    shards = {Path(f).name for f in ck.files}
    copied = []
    for item in sorted(source.iterdir()):
        if (
            item.is_file()
            and item.name not in shards
            and item.name not in written
            and not item.name.endswith(".index.json")
            and not item.name.startswith(".")
            and item.suffix not in {".bin", ".pt", ".pth", ".ckpt", ".safetensors"}
            and item.stat().st_size <= SIDE_FILE_LIMIT
        ):
            shutil.copy2(item, out / item.name)
            copied.append(item.name)
    return copied


def _shard_name(name: str) -> str:
    stem = name.rsplit(".", 1)[0]
    return stem.replace("pytorch_model", "model") + ".safetensors"


def _write_sharded(
    ck: Checkpoint,
    target: Path,
    transform: Transform,
    metadata: dict[str, str],
    *,
    chunk: int | None,
    overwrite: bool,
) -> WriteResult:
    by_file: dict[str, list[TensorInfo]] = {}
    for info in ck.infos.values():
        by_file.setdefault(info.file, []).append(info)
    # a tensor also held by another shard (key "shard:name") is copied but not indexed
    listed = {id(info) for key, info in ck.infos.items() if key == info.name}
    own_meta: dict[str, dict[str, str]] = ck.extra.get("shard_metadata") or {}
    changes = {k: v for k, v in metadata.items() if ck.metadata.get(k) != v}
    weight_map: dict[str, str] = {}
    names: list[str] = []
    buffer = read_buffer(ck.infos.values(), chunk)  # one for every shard
    with _atomic_dir(target, overwrite=overwrite) as tmp:
        for shard in ck.files:
            name = _shard_name(Path(shard).name)
            infos = by_file.get(shard, [])
            meta = {**own_meta.get(Path(shard).name, metadata), **changes}
            write_safetensors_file(
                ck, infos, tmp / name, transform, metadata=meta, chunk=chunk, buffer=buffer
            )
            weight_map.update({i.name: name for i in infos if id(i) in listed})
            names.append(name)
        index_meta = {
            **dict(ck.extra.get("index_metadata") or {}),
            "total_size": sum(i.nbytes for i in ck.infos.values()),
            **{k: v for k, v in metadata.items() if k.startswith("covertml") or k == "sanitized"},
        }
        index = {"metadata": index_meta, "weight_map": dict(sorted(weight_map.items()))}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        names.append("model.safetensors.index.json")
        names += _copy_side_files(ck, tmp, set(names))
    return WriteResult(str(target), tuple(str(target / n) for n in names))


def _target_file(ck: Checkpoint, target: Path, suffix: str) -> Path:
    if target.is_dir():
        return target / (Path(ck.path).stem + suffix)
    return target


def write_like(
    ck: Checkpoint,
    target: str | os.PathLike[str],
    transform: Transform,
    *,
    metadata: dict[str, str],
    chunk: int | None = None,
    overwrite: bool = False,
) -> WriteResult:
    """Writes ``ck`` with every readable tensor passed through ``transform``.

    Args:
        ck: An open checkpoint.
        target: Output file, or directory for sharded checkpoints (an existing directory
            receives a single-file checkpoint under the input's name).
        transform: See :data:`Transform`.
        metadata: The output's string metadata (replaces the input's).
        chunk: Stream tensors larger than this many values in flat chunks (for
            element-wise transforms); ``None`` passes whole tensors.
        overwrite: Replace an existing output (never the input).

    Example:
        >>> import tempfile, pathlib, torch
        >>> from safetensors.torch import save_file
        >>> from covertml.models.checkpoint import open_checkpoint
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> save_file({"w": torch.ones(3, dtype=torch.bfloat16)}, d / "in.safetensors")
        >>> ck = open_checkpoint(d / "in.safetensors")
        >>> r = write_like(ck, d / "out.safetensors", lambda i, v: v * 2, metadata={"a": "b"})
        >>> out = open_checkpoint(r.output)
        >>> out["w"].tolist(), out.metadata
        ([2.0, 2.0, 2.0], {'a': 'b'})
    """
    out = Path(target)
    sources = {Path(f).resolve() for f in ck.files} | {Path(ck.path).resolve()}
    if out.resolve() in sources or (
        out.is_dir() and out.resolve() == Path(ck.path).parent.resolve()
    ):
        raise ConfigError(
            f"output {out} is the input; covertml never writes over its input",
            fix="choose another output path",
        )
    fmt = ck.format
    unwritable = [i.name for i in ck.infos.values() if i.skip is not None and i.offset is None]
    if unwritable and fmt not in {"onnx", "gguf"}:
        raise ModelFileError(
            f"{ck.path}: tensor {unwritable[0]} cannot be copied ({ck.infos[unwritable[0]].skip})",
            fix="convert the checkpoint to float32/float16/bfloat16 safetensors first",
        )
    if fmt in {"safetensors-sharded", "pickle-sharded"}:
        return _write_sharded(ck, out, transform, metadata, chunk=chunk, overwrite=overwrite)
    if fmt in {"onnx", "gguf"}:
        file = _target_file(ck, out, "." + fmt)
        _check_free(file, overwrite)
        if fmt == "onnx":
            from covertml.models.checkpoint.onnx_format import write_onnx

            write_onnx(ck, file, transform, metadata=metadata)
        else:
            from covertml.models.checkpoint.gguf_format import write_gguf

            write_gguf(ck, file, transform, metadata=metadata)
        return WriteResult(str(file), (str(file),))
    file = _target_file(ck, out, ".safetensors")
    if fmt == "pickle" and file.suffix in {".bin", ".pt", ".pth", ".ckpt"}:
        raise ConfigError(
            f"{file} would be a pickle; covertml writes safetensors only",
            fix="name the output *.safetensors",
        )
    _check_free(file, overwrite)
    infos = list(ck.infos.values())
    write_safetensors_file(ck, infos, file, transform, metadata=metadata, chunk=chunk)
    return WriteResult(str(file), (str(file),))


def _check_free(file: Path, overwrite: bool) -> None:
    if file.exists() and not overwrite:
        raise ConfigError(f"{file} already exists", fix="choose another path or pass --overwrite")
