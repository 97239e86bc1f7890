"""The label-only prediction API (FastAPI): ``POST /predict``, ``GET /health``, ``/docs``.

It answers class indices and nothing else -- no scores, no probabilities -- which is all
capacity abuse needs. Requests are validated (content type, body size, shape, dtype,
finiteness, batch size) and rejected with a 4xx status and a one-line ``detail``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from torch import nn

from covertml.serve.codec import NPY, NPZ, InputSpec, RequestError, parse_body
from covertml.serve.limits import LimitExceededError, QueryGate, ServeLimits
from covertml.training.batches import to_model_input

log = logging.getLogger(__name__)

_EXAMPLE = {"inputs": [[[0.0, 0.5], [1.0, 0.25]]]}
_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "inputs": {"type": "array", "items": {}},
                        "sparse": {
                            "type": "object",
                            "properties": {
                                "indices": {"type": "array", "items": {"type": "array"}},
                                "values": {"type": "array", "items": {"type": "array"}},
                            },
                        },
                    },
                },
                "example": _EXAMPLE,
            },
            NPY: {"schema": {"type": "string", "format": "binary"}},
            NPZ: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class Predictor:
    """Runs the model on validated batches (thread-safe: inference only, no state)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    @torch.no_grad()
    def __call__(self, batch: np.ndarray | sp.csr_matrix) -> list[int]:
        """Predicted labels of ``batch``."""
        labels: list[int] = self.model(to_model_input(batch)).argmax(1).tolist()
        return labels


def create_app(
    model: nn.Module,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    limits: ServeLimits | None = None,
    sparse: bool | None = None,
    title: str = "covertml prediction API",
) -> FastAPI:
    """A FastAPI app serving ``model``'s labels.

    Example:
        >>> import httpx
        >>> from covertml.models import create_model
        >>> from covertml.serve.runner import BackgroundServer
        >>> m = create_model("mlp", input_shape=(1, 2, 2), num_classes=3)
        >>> with BackgroundServer(create_app(m, input_shape=(1, 2, 2), num_classes=3)) as srv:
        ...     r = httpx.post(srv.url + "/predict", json={"inputs": [[[[0, 1], [1, 0]]]]})
        >>> r.status_code, len(r.json()["labels"])
        (200, 1)
    """
    limits = limits or ServeLimits()
    if sparse is None:  # feature-vector models (text) take sparse rows
        sparse = len(input_shape) == 1
    spec = InputSpec(tuple(input_shape), sparse=sparse, max_batch=limits.max_batch)
    predictor = Predictor(model)
    gate = QueryGate(limits)
    app = FastAPI(
        title=title,
        description="Label-only predictions. " + f"Inputs: {spec.describe()}.",
        version="1",
    )
    app.state.gate = gate

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness and the input contract."""
        return {
            "status": "ok",
            "input_shape": list(input_shape),
            "input_format": "sparse" if sparse else "dense",
            "num_classes": num_classes,
            "max_batch": limits.max_batch,
            "formats": ["application/json", NPZ if sparse else NPY],
        }

    @app.post("/predict", openapi_extra=_OPENAPI_BODY)
    async def predict(request: Request) -> JSONResponse:
        """Class labels (only) for a batch of inputs."""
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            return _error(400, "malformed Content-Length header")
        if declared > limits.max_body_bytes:
            return _error(413, f"body of {declared} bytes exceeds {limits.max_body_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                return _error(413, f"body exceeds {limits.max_body_bytes} bytes")
        try:
            batch = parse_body(bytes(body), request.headers.get("content-type", ""), spec)
        except RequestError as exc:
            return _error(exc.status, exc.message)
        client = request.client.host if request.client else "unknown"
        try:
            gate.admit(client, batch.shape[0])
        except LimitExceededError as exc:
            headers = {}
            if exc.retry_after is not None:
                headers["Retry-After"] = str(max(1, round(exc.retry_after)))
            return _error(429, exc.message, headers=headers)
        labels = await run_in_threadpool(predictor, batch)
        return JSONResponse({"labels": labels})

    return app


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def app_from_file(path: str | os.PathLike[str], *, limits: ServeLimits | None = None) -> FastAPI:
    """The API for a model file (safetensors written by covertml)."""
    from covertml.models.files import load_model
    from covertml.models.registry import model_modality

    loaded = load_model(path)
    spec = loaded.info.spec
    return create_app(
        loaded.model,
        input_shape=tuple(spec.input_shape),
        num_classes=spec.num_classes,
        limits=limits,
        sparse=model_modality(spec.name) == "text",
        title=f"covertml prediction API ({spec.name})",
    )
