"""The adversary's client: a label oracle over the prediction API."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import numpy as np
import scipy.sparse as sp

from covertml.attacks.oracle import FunctionOracle, Inputs
from covertml.errors import CovertMLError
from covertml.serve.codec import NPY, NPZ, encode_npy, encode_npz


class EndpointError(CovertMLError, RuntimeError):
    """The prediction API could not be reached or refused a request."""


NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def make_client(url: str, *, timeout: float = 60.0) -> httpx.Client:
    """An HTTP client with Nagle's algorithm off.

    httpx writes a request in more than one piece; with Nagle on, the second piece waits
    for the server's delayed ACK, adding about 40 ms to every request on loopback.
    """
    transport = httpx.HTTPTransport(socket_options=NODELAY)
    return httpx.Client(base_url=url, timeout=timeout, transport=transport)


class HTTPOracle(FunctionOracle):
    """Asks a covertml prediction API for labels, in binary batches over one connection.

    Args:
        url: Base URL of the server, e.g. ``http://127.0.0.1:8000``.
        batch_size: Inputs per request (at most the server's ``max_batch``).
        timeout: Seconds per request.
    """

    def __init__(self, url: str, *, batch_size: int = 4096, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.client = make_client(self.url, timeout=timeout)
        info = self.health()
        batch_size = min(batch_size, int(info.get("max_batch", batch_size)))
        super().__init__(self._ask, batch_size=batch_size)

    def health(self) -> dict[str, Any]:
        """The server's ``/health`` answer (its input contract)."""
        response = self._send(
            "GET",
            "/health",
            problem=f"cannot reach the prediction API at {self.url}",
            fix="start it with `covertml serve MODEL` and pass its URL to --endpoint",
        )
        if response.status_code != 200:
            raise EndpointError(
                f"{self.url}/health answered {response.status_code}",
                fix="pass the base URL of a covertml prediction API",
            )
        data: dict[str, Any] = response.json()
        return data

    def _send(self, method: str, path: str, *, problem: str, fix: str, **kw: Any) -> httpx.Response:
        """One request; a transport failure becomes a one-line :class:`EndpointError`."""
        try:
            return self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise EndpointError(f"{problem} ({exc.__class__.__name__}: {exc})", fix=fix) from None

    def _ask(self, x: Inputs) -> np.ndarray:
        if sp.issparse(x):
            body, kind = encode_npz(sp.csr_matrix(x)), NPZ
        else:
            body, kind = encode_npy(np.asarray(x, dtype=np.float32)), NPY
        response = self._send(
            "POST",
            "/predict",
            problem=f"request to {self.url}/predict failed",
            fix="check that the server is still running",
            content=body,
            headers={"content-type": kind},
        )
        if response.status_code != 200:
            if response.status_code == 429:
                fix = "wait and retry, or ask for a larger budget"
            else:
                fix = "check that the key was made for the model this server runs"
            raise EndpointError(
                f"the prediction API refused a batch ({response.status_code}: {_detail(response)})",
                fix=fix,
            )
        return np.asarray(response.json()["labels"], dtype=np.int64)

    def close(self) -> None:
        """Closes the connection."""
        self.client.close()

    def __enter__(self) -> HTTPOracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:200]
