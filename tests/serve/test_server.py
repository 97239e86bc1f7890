"""The prediction API, served by a real uvicorn on loopback."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from covertml.attacks import LocalOracle
from covertml.models import create_model, save_model
from covertml.serve import BackgroundServer, HTTPOracle, ServeLimits, app_from_file, create_app
from covertml.serve.client import EndpointError
from covertml.serve.codec import NPY, NPZ, encode_npy, encode_npz
from covertml.serve.limits import LimitExceededError, QueryGate

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def image_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mlp", input_shape=SHAPE, num_classes=10).eval()


@pytest.fixture(scope="module")
def server(image_model):
    app = create_app(
        image_model,
        input_shape=SHAPE,
        num_classes=10,
        limits=ServeLimits(max_batch=64, max_body_bytes=200_000),
    )
    with BackgroundServer(app) as srv:
        yield srv


def expected(model: torch.nn.Module, x: np.ndarray) -> list[int]:
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1).tolist()


def test_binds_loopback_and_answers_labels_only(server, image_model) -> None:
    assert server.host == "127.0.0.1"
    health = httpx.get(server.url + "/health").json()
    assert health["input_shape"] == list(SHAPE) and health["max_batch"] == 64
    x = np.random.default_rng(0).random((5, *SHAPE), dtype=np.float32)
    r = httpx.post(server.url + "/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200
    assert set(r.json()) == {"labels"}
    assert r.json()["labels"] == expected(image_model, x)
    r = httpx.post(server.url + "/predict", content=encode_npy(x), headers={"content-type": NPY})
    assert r.json()["labels"] == expected(image_model, x)
    assert "/predict" in httpx.get(server.url + "/openapi.json").json()["paths"]


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b"[1, 2]", "application/json", 422, '"inputs"'),
        (json.dumps({"inputs": [[1, 2]]}).encode(), "application/json", 422, "shape"),
        (json.dumps({"inputs": [["a"] * 8] * 8}).encode(), "application/json", 422, "numbers"),
        (json.dumps({"inputs": [[[1] * 8] * 8, [[1] * 7]]}).encode(), "application/json", 422, ""),
        (json.dumps({"inputs": []}).encode(), "application/json", 422, "shape"),
        (npy(np.zeros((0, *SHAPE), np.float32)), NPY, 422, "empty"),
        (npy(np.zeros((2, *SHAPE), np.float64)), NPY, 422, "float32"),
        (npy(np.full((2, *SHAPE), np.nan, np.float32)), NPY, 422, "NaN"),
        (npy(np.zeros((65, *SHAPE), np.float32)), NPY, 413, "limit of 64"),
        (b"\x93NUMPY garbage", NPY, 400, ".npy"),
        (b"x" * 300_000, NPY, 413, "exceeds"),
        (b"hello", "text/plain", 415, "content type"),
        (encode_npz(sp.csr_matrix(np.ones((1, 64), np.float32))), NPZ, 415, "dense"),
    ],
)
def test_malformed_requests_get_a_clear_4xx(server, body, content_type, status, message) -> None:
    r = httpx.post(server.url + "/predict", content=body, headers={"content-type": content_type})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and message in detail


def test_budget_and_rate_limit_answer_429(image_model) -> None:
    x = np.zeros((10, *SHAPE), np.float32)
    limits = ServeLimits(query_budget=25)
    with BackgroundServer(
        create_app(image_model, input_shape=SHAPE, num_classes=10, limits=limits)
    ) as srv:
        post = lambda: httpx.post(srv.url + "/predict", json={"inputs": x.tolist()})  # noqa: E731
        assert [post().status_code for _ in range(3)] == [200, 200, 429]
        assert "budget of 25" in post().json()["detail"]
    limits = ServeLimits(rate=5.0, burst=10)
    with BackgroundServer(
        create_app(image_model, input_shape=SHAPE, num_classes=10, limits=limits)
    ) as srv:
        first = httpx.post(srv.url + "/predict", json={"inputs": x.tolist()})
        second = httpx.post(srv.url + "/predict", json={"inputs": x.tolist()})
        assert first.status_code == 200 and second.status_code == 429
        assert int(second.headers["retry-after"]) >= 1


def test_rate_limiter_refills_over_time() -> None:
    now = [0.0]
    gate = QueryGate(ServeLimits(rate=10.0, burst=20), clock=lambda: now[0])
    gate.admit("a", 20)
    with pytest.raises(LimitExceededError):
        gate.admit("a", 5)
    gate.admit("b", 20)  # clients are counted apart
    now[0] = 0.5  # 5 tokens back
    gate.admit("a", 5)
    with pytest.raises(LimitExceededError, match="burst"):
        gate.admit("a", 21)
    assert gate.used("a") == 25


def test_sparse_text_model_over_http(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model("logreg", input_shape=(5000,), num_classes=3)
    path = save_model(model, tmp_path / "m.safetensors")
    x = sp.random(40, 5000, density=0.01, format="csr", random_state=0, dtype=np.float32)
    local = LocalOracle(model)(x)
    with BackgroundServer(app_from_file(path, limits=ServeLimits(max_batch=16))) as srv:
        oracle = HTTPOracle(srv.url, batch_size=1000)
        assert oracle.batch_size == 16  # capped by the server's limit
        assert oracle(x).tolist() == local.tolist()
        assert oracle.queries == 40 and oracle.requests == 3
        rows = x[:2]
        body = {
            "sparse": {
                "indices": [rows[i].indices.tolist() for i in range(2)],
                "values": [rows[i].data.tolist() for i in range(2)],
            }
        }
        r = httpx.post(srv.url + "/predict", json=body)
        assert r.json()["labels"] == local[:2].tolist()
        bad = {"sparse": {"indices": [[5000]], "values": [[1.0]]}}
        r = httpx.post(srv.url + "/predict", json=bad)
        assert r.status_code == 422 and "[0, 5000)" in r.json()["detail"]
        dense = httpx.post(srv.url + "/predict", json={"inputs": x[:1].toarray().tolist()})
        assert dense.json()["labels"] == local[:1].tolist()


def test_client_errors_are_one_line(server) -> None:
    with pytest.raises(EndpointError, match="cannot reach"):
        HTTPOracle("http://127.0.0.1:9")
    oracle = HTTPOracle(server.url)
    with pytest.raises(EndpointError, match="422"):
        oracle(np.zeros((2, 3), np.float32))


def test_listening_socket_is_tcp_so_responses_skip_nagle() -> None:
    """asyncio disables Nagle only on sockets whose proto is TCP (else ~40 ms per reply)."""
    import socket

    from covertml.serve.runner import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
