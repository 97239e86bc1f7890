"""Request bodies of the prediction API: parsing and validation, independent of the web stack.

Dense models (images) take ``N x <input shape>`` float32 batches; models on sparse TF-IDF
rows take CSR batches. Formats:

- ``application/json``: ``{"inputs": [[...], ...]}`` (nested lists of numbers), or for
  sparse models ``{"sparse": {"indices": [[...], ...], "values": [[...], ...]}}``.
- ``application/x-npy``: one NumPy ``.npy`` array, float32 (read with
  ``allow_pickle=False``).
- ``application/x-npz`` (sparse models): arrays ``indptr``, ``indices``, ``data`` of a CSR
  matrix, read with ``allow_pickle=False``.

Every problem raises :class:`RequestError` with an HTTP status and a one-line message.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import scipy.sparse as sp

NPY = "application/x-npy"
NPZ = "application/x-npz"


class RequestError(ValueError):
    """A request the API rejects: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InputSpec:
    """What the served model takes.

    Attributes:
        shape: One input's shape, e.g. ``(1, 8, 8)`` or ``(130107,)``.
        sparse: Whether inputs are sparse rows (text models).
        max_batch: Most inputs in one request.
    """

    shape: tuple[int, ...]
    sparse: bool
    max_batch: int

    def describe(self) -> str:
        """Human description of the expected batch."""
        dims = ", ".join(str(d) for d in self.shape)
        kind = "sparse CSR rows" if self.sparse else "float32 array"
        return f"{kind} of shape (N, {dims}) with 1 <= N <= {self.max_batch}"


def parse_body(body: bytes, content_type: str, spec: InputSpec) -> np.ndarray | sp.csr_matrix:
    """Parses and validates one request body into a model-ready batch.

    Example:
        >>> spec = InputSpec((2,), sparse=False, max_batch=4)
        >>> parse_body(b'{"inputs": [[0.5, 1]]}', "application/json", spec).tolist()
        [[0.5, 1.0]]
    """
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("application/json", ""):
        batch = _from_json(body, spec)
    elif kind == NPY:
        batch = _from_npy(body)
    elif kind == NPZ:
        batch = _from_npz(body, spec)
    else:
        raise RequestError(
            415, f"unsupported content type {kind!r}; send application/json, {NPY} or {NPZ}"
        )
    return _validate(batch, spec)


def _from_json(body: bytes, spec: InputSpec) -> np.ndarray | sp.csr_matrix:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"malformed JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(payload, dict) or not ({"inputs", "sparse"} & payload.keys()):
        raise RequestError(422, 'the JSON body must be an object with "inputs" (or "sparse")')
    if "sparse" in payload:
        return _sparse_from_json(payload["sparse"], spec)
    return _numbers(payload["inputs"], "inputs")


def _numbers(value: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except ValueError:
        raise RequestError(422, f"{what} must be a rectangular array of numbers") from None
    if arr.dtype == object or arr.dtype.kind not in "iuf" or arr.dtype == np.bool_:
        raise RequestError(422, f"{what} must be a rectangular array of numbers")
    return arr


def _sparse_from_json(value: Any, spec: InputSpec) -> sp.csr_matrix:
    if not spec.sparse:
        raise RequestError(422, 'this model takes dense inputs; send {"inputs": ...}')
    if not isinstance(value, dict) or not {"indices", "values"} <= value.keys():
        raise RequestError(422, '"sparse" must be {"indices": [[...]], "values": [[...]]}')
    rows_i, rows_v = value["indices"], value["values"]
    if not isinstance(rows_i, list) or not isinstance(rows_v, list) or len(rows_i) != len(rows_v):
        raise RequestError(422, '"indices" and "values" must be lists with one entry per row')
    lengths = [len(r) if isinstance(r, list) else -1 for r in rows_i]
    if any(n < 0 for n in lengths) or any(
        not isinstance(v, list) or len(v) != n for v, n in zip(rows_v, lengths, strict=True)
    ):
        raise RequestError(422, "each row needs as many values as indices")
    _check_batch(len(rows_i), spec)
    indices = _numbers(list(chain.from_iterable(rows_i)) or np.zeros(0, np.int64), "indices")
    data = _numbers(list(chain.from_iterable(rows_v)) or np.zeros(0, np.float32), "values")
    if indices.dtype.kind == "f":
        raise RequestError(422, "indices must be integers")
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return _build_csr(indptr, indices, data, spec)


def _from_npy(body: bytes) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RequestError(400, f"malformed .npy body ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise RequestError(400, f"expected one array in the {NPY} body")
    if arr.dtype != np.float32:
        raise RequestError(422, f"inputs must be float32, got {arr.dtype}; convert before sending")
    return arr


def _from_npz(body: bytes, spec: InputSpec) -> sp.csr_matrix:
    if not spec.sparse:
        raise RequestError(415, f"this model takes dense inputs; send {NPY} or JSON")
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("indptr", "indices", "data")}
    except KeyError as exc:
        raise RequestError(422, f"the {NPZ} body lacks array {exc}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RequestError(400, f"malformed .npz body ({exc})") from None
    if arrays["data"].dtype != np.float32:
        raise RequestError(422, f"data must be float32, got {arrays['data'].dtype}")
    if arrays["indices"].dtype.kind not in "iu" or arrays["indptr"].dtype.kind not in "iu":
        raise RequestError(422, "indptr and indices must be integer arrays")
    _check_batch(max(arrays["indptr"].size - 1, 0), spec)
    return _build_csr(arrays["indptr"], arrays["indices"], arrays["data"], spec)


def _build_csr(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, spec: InputSpec
) -> sp.csr_matrix:
    n_features = spec.shape[0]
    indptr = indptr.astype(np.int64).reshape(-1)
    indices = indices.astype(np.int64).reshape(-1)
    ok = (
        indptr.size >= 1
        and indptr[0] == 0
        and indptr[-1] == indices.size == data.size
        and bool(np.all(np.diff(indptr) >= 0))
    )
    if not ok:
        raise RequestError(422, "inconsistent CSR arrays (indptr must run from 0 to len(indices))")
    if indices.size and (indices.min() < 0 or indices.max() >= n_features):
        raise RequestError(422, f"feature indices must lie in [0, {n_features})")
    matrix = sp.csr_matrix(
        (data.astype(np.float32), indices, indptr), shape=(indptr.size - 1, n_features)
    )
    matrix.sum_duplicates()
    return matrix


def _check_batch(n: int, spec: InputSpec) -> None:
    if n < 1:
        raise RequestError(422, "the batch is empty; send at least one input")
    if n > spec.max_batch:
        raise RequestError(413, f"batch of {n} inputs exceeds the limit of {spec.max_batch}")


def _validate(batch: np.ndarray | sp.csr_matrix, spec: InputSpec) -> np.ndarray | sp.csr_matrix:
    if sp.issparse(batch):
        if not np.all(np.isfinite(batch.data)):
            raise RequestError(422, "inputs contain NaN or infinity")
        return batch
    arr = np.asarray(batch)
    if arr.ndim != len(spec.shape) + 1 or arr.shape[1:] != spec.shape:
        raise RequestError(
            422, f"inputs have shape {tuple(arr.shape)}; expected a {spec.describe()}"
        )
    _check_batch(arr.shape[0], spec)
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise RequestError(422, "inputs contain NaN or infinity")
    if spec.sparse:
        return sp.csr_matrix(arr)
    return arr


def encode_npy(batch: np.ndarray) -> bytes:
    """A float32 batch as an ``application/x-npy`` body."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(batch, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def encode_npz(batch: sp.csr_matrix) -> bytes:
    """CSR rows as an ``application/x-npz`` body."""
    m = sp.csr_matrix(batch)
    buf = io.BytesIO()
    np.savez(buf, indptr=m.indptr, indices=m.indices, data=m.data.astype(np.float32))
    return buf.getvalue()
