"""On-disk cache of decoded datasets as uncompressed ``.npz`` arrays.

The first load of an archive decodes it (JPEG, text parsing, TF-IDF) and stores the result
under :func:`covertml.paths.cache_dir`; later loads read the arrays back in well under a second.
The cache key covers the loader's options, a format version and the archive's size and
modification time, so a changed archive or option is never served stale data.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from covertml.paths import atomic_write, cache_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size and modification time of ``path``, for cache keys."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_path(name: str, key: dict[str, Any], directory: Path | None = None) -> Path:
    """The cache file for dataset ``name`` under ``key`` (in ``directory`` or the user cache)."""
    blob = json.dumps({"v": CACHE_VERSION, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return (directory or cache_dir()) / f"{name}-{digest}.npz"


def cached_arrays(
    name: str,
    key: dict[str, Any],
    build: Callable[[], dict[str, np.ndarray]],
    *,
    use_cache: bool = True,
    directory: Path | None = None,
) -> dict[str, np.ndarray]:
    """Returns ``build()``'s arrays, from the cache when present, storing them otherwise.

    Example:
        >>> import tempfile
        >>> where, calls = Path(tempfile.mkdtemp()), []
        >>> def build():
        ...     calls.append(1)
        ...     return {"a": np.arange(3)}
        >>> first = cached_arrays("toy", {"k": 1}, build, directory=where)["a"].tolist()
        >>> again = cached_arrays("toy", {"k": 1}, build, directory=where)["a"].tolist()
        >>> first, again, len(calls)
        ([0, 1, 2], [0, 1, 2], 1)
    """
    if not use_cache:
        return build()
    path = cache_path(name, key, directory)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError) as exc:  # damaged cache: rebuild it
            log.warning("ignoring damaged cache file %s (%s)", path, exc)
    arrays = build()
    try:
        with atomic_write(path) as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        log.info("cached %s at %s", name, path)
    except OSError as exc:  # read-only cache dir: still return the data
        log.warning("could not write cache %s (%s)", path, exc)
    return arrays


def csr_to_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Flattens a CSR matrix into named arrays for :func:`cached_arrays`."""
    return {
        f"{prefix}_data": matrix.data,
        f"{prefix}_indices": matrix.indices,
        f"{prefix}_indptr": matrix.indptr,
        f"{prefix}_shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def csr_from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    """Inverse of :func:`csr_to_arrays`."""
    shape = tuple(int(s) for s in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
        shape=shape,
    )


def strings_to_array(words: list[str] | tuple[str, ...]) -> np.ndarray:
    """Packs strings without newlines into one ``uint8`` array (UTF-8, newline-joined)."""
    return np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8)


def strings_from_array(blob: np.ndarray) -> tuple[str, ...]:
    """Inverse of :func:`strings_to_array`."""
    text = blob.tobytes().decode("utf-8")
    return tuple(text.split("\n")) if text else ()
