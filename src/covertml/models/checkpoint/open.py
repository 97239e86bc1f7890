"""Opening any checkpoint: a file, an index file or a checkpoint directory; finding them in trees.

Formats, recognized by content first and name second:

- safetensors (``.safetensors``; with or without covertml metadata), and sharded
  safetensors through ``*.safetensors.index.json``;
- pickle-based PyTorch files (``.bin``, ``.pt``, ``.pth``, ``.ckpt``) and sharded ``.bin``
  through ``*.bin.index.json`` -- only with ``allow_pickle=True``, and then read with
  ``torch.load(weights_only=True)``, which refuses anything but tensors and containers;
- ONNX (``.onnx``; float initializers), with the ``onnx`` package;
- GGUF (``.gguf``; F32/F16/BF16 tensors, quantized ones listed as skipped), with the
  ``gguf`` package.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from covertml.errors import ModelFileError
from covertml.models.checkpoint import safetensors_format as stf
from covertml.models.checkpoint.base import Checkpoint

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
SUFFIXES = (".safetensors", ".onnx", ".gguf", *PICKLE_SUFFIXES)
PICKLE_FIX = (
    "convert it to safetensors, or pass --allow-pickle (allow_pickle=True) to read it with "
    "torch.load(weights_only=True)"
)


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(16)


def is_pickle(head: bytes) -> bool:
    """Whether a file starts like a PyTorch zip archive or a raw pickle."""
    return head[:2] == b"PK" or head[:1] == b"\x80"


def _pickle_guard(path: Path, allow_pickle: bool) -> None:
    if path.suffix in {".npz", ".zip", ".npy"}:
        raise ModelFileError(
            f"{path} is a NumPy/zip archive, not a model checkpoint covertml reads",
            fix="save the weights as safetensors (safetensors.numpy.save_file)",
        )
    if not allow_pickle:
        raise ModelFileError(
            f"{path} is a pickle-based PyTorch file, which can run code when loaded",
            fix=PICKLE_FIX,
        )


def _index_in(directory: Path) -> Path | None:
    found = sorted(directory.glob("*.index.json"))
    st = [p for p in found if p.name.endswith(".safetensors.index.json")]
    chosen = st or found
    return chosen[0] if chosen else None


def _model_file_in(directory: Path) -> Path:
    index = _index_in(directory)
    if index is not None:
        return index
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in SUFFIXES)
    preferred = [p for p in files if p.suffix == ".safetensors"] or files
    if len(preferred) == 1:
        return preferred[0]
    if not preferred:
        raise ModelFileError(
            f"{directory} holds no model file (*.safetensors, *.index.json, .bin, .onnx, .gguf)",
            fix="pass the checkpoint's directory or one of its files",
        )
    raise ModelFileError(
        f"{directory} holds {len(preferred)} model files and no index "
        f"({', '.join(p.name for p in preferred[:3])}, ...)",
        fix="pass one file, or scan the directory as a tree (several paths or --recursive)",
    )


def open_checkpoint(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> Checkpoint:
    """Opens a checkpoint lazily (headers only; tensors are read when looked up).

    Args:
        path: A model file, a shard index (``*.index.json``) or a checkpoint directory.
        allow_pickle: Also open pickle-based files, with ``torch.load(weights_only=True)``.

    Raises:
        ModelFileError: missing, truncated or corrupt files, missing shards, an index
            naming absent tensors, unknown formats, pickles without ``allow_pickle``.

    Example:
        >>> import tempfile, pathlib, torch
        >>> from safetensors.torch import save_file
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.safetensors"
        >>> save_file({"w": torch.ones(4, 4, dtype=torch.float16)}, p)
        >>> ck = open_checkpoint(p.parent)
        >>> ck.format, ck.infos["w"].dtype, float(ck["w"].sum())
        ('safetensors', 'float16', 16.0)
    """
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file {p} does not exist", fix="check the path")
    if p.is_dir():
        p = _model_file_in(p)
    if stf.index_name(p):
        weight_map, _ = stf.read_index(p)
        first = next(iter(weight_map.values()))
        if first.endswith(".safetensors"):
            return stf.open_sharded(p)
        _pickle_guard(p, allow_pickle)
        from covertml.models.checkpoint.pickle_format import open_pickle_sharded

        return open_pickle_sharded(p)
    head = _head(p)
    if stf.is_safetensors(head):
        return stf.open_single(p)
    if is_pickle(head):
        _pickle_guard(p, allow_pickle)
        from covertml.models.checkpoint.pickle_format import open_pickle

        return open_pickle(p)
    if head[:4] == b"GGUF":
        from covertml.models.checkpoint.gguf_format import open_gguf

        return open_gguf(p)
    if p.suffix == ".onnx":
        from covertml.models.checkpoint.onnx_format import open_onnx

        return open_onnx(p)
    if p.suffix == ".safetensors" or len(head) < 9:
        stf.read_header(p)  # raises the precise error (truncated, bad header)
    raise ModelFileError(
        f"{p} is not a model file covertml can read",
        fix="use safetensors, a shard index, .bin/.pt (with --allow-pickle), .onnx or .gguf",
    )


def find_checkpoints(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The checkpoints under ``paths``: files as given, directories searched as trees.

    A directory with a shard index is one checkpoint (its shards are not listed again);
    every other model file found is one checkpoint. A directory without any is an error,
    so that a scan pointed at the wrong place does not pass as clean.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "a").mkdir(); _ = (d / "a" / "x.safetensors").write_bytes(b"")
        >>> _ = (d / "notes.txt").write_text("hi")
        >>> [p.name for p in find_checkpoints([d])]
        ['x.safetensors']
    """
    out: list[Path] = []
    for given in paths:
        p = Path(given)
        if not p.exists():
            raise ModelFileError(f"model file {p} does not exist", fix="check the path")
        if p.is_file():
            out.append(p)
            continue
        before = len(out)
        for root, dirs, files in os.walk(p):
            dirs.sort()
            here = Path(root)
            indexed: set[str] = set()
            for name in sorted(f for f in files if f.endswith(".index.json")):
                index = here / name
                try:
                    weight_map, _ = stf.read_index(index)
                except ModelFileError:
                    out.append(index)  # reported when opened
                    continue
                indexed |= set(weight_map.values())
                out.append(index)
            for name in sorted(files):
                if name not in indexed and Path(name).suffix in SUFFIXES:
                    out.append(here / name)
        if len(out) == before:
            raise ModelFileError(
                f"{p} holds no model file (no *.safetensors, *.bin, *.pt, *.onnx, *.gguf "
                "or shard index anywhere below it)",
                fix="point at the checkpoint directory or file",
            )
    return list(dict.fromkeys(out))
