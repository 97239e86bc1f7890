"""Label queries per second through the prediction API on loopback, and a load test.

Usage:
    python bench/http_throughput.py [--batches 256,1024,4096] [--clients 8 --seconds 60]

Starts `covertml serve` on a digits MLP in a separate process (as a deployment would run),
then:
1. extraction throughput: one client (the HTTPOracle capacity abuse uses) asks for the
   labels of 65,536 synthetic inputs in binary (.npy) batches of each size; baseline: the
   same queries answered in-process by LocalOracle (no HTTP);
2. load test: N concurrent clients (threads, one connection each) send batches of 256
   inputs for S seconds; reports requests, errors, throughput and latency percentiles.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from common import markdown_table, save_record
from covertml.attacks import LocalOracle
from covertml.models import create_model, save_model
from covertml.serve import HTTPOracle
from covertml.serve.client import make_client
from covertml.serve.codec import NPY, encode_npy

SHAPE = (1, 8, 8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model_path: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "covertml", "serve", str(model_path), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start: " + (proc.stderr.read() or b"").decode()[-500:])


def extraction(url: str, model: torch.nn.Module, batches: list[int], n: int) -> list[dict]:
    x = np.random.default_rng(0).random((n, *SHAPE), dtype=np.float32)
    local = LocalOracle(model, batch_size=4096)
    expected = local(x)  # warm-up
    local_s = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        local(x)
        local_s = min(local_s, time.perf_counter() - t0)
    out = []
    for batch in batches:
        oracle = HTTPOracle(url, batch_size=batch)
        oracle(x[:batch])  # warm the connection
        oracle.queries = 0
        t0 = time.perf_counter()
        labels = oracle(x)
        seconds = time.perf_counter() - t0
        assert (labels == expected).all(), "HTTP labels differ from the local model's"
        oracle.close()
        out.append(
            {
                "batch": batch,
                "queries": n,
                "seconds": seconds,
                "qps": n / seconds,
                "local_qps": n / local_s,
            }
        )
        print(out[-1], flush=True)
    return out


def load_test(url: str, clients: int, seconds: float, batch: int) -> dict:
    body = encode_npy(np.random.default_rng(1).random((batch, *SHAPE), dtype=np.float32))
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        with make_client(url, timeout=30) as c:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = c.post("/predict", content=body, headers={"content-type": NPY})
                    ok = r.status_code == 200 and len(r.json()["labels"]) == batch
                except httpx.HTTPError:
                    ok = False
                latencies[i].append(time.perf_counter() - t0)
                errors[i] += 0 if ok else 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.concatenate([np.asarray(v) for v in latencies]) * 1000
    requests = int(lat.size)
    return {
        "clients": clients,
        "seconds": wall,
        "batch": batch,
        "requests": requests,
        "errors": int(sum(errors)),
        "requests_per_s": requests / wall,
        "queries_per_s": requests * batch / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="256,1024,4096")
    parser.add_argument("--queries", type=int, default=65536)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--load-batch", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model("mlp", input_shape=SHAPE, num_classes=10).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(model, Path(tmp) / "model.safetensors")
        port = free_port()
        proc = start_server(path, port)
        url = f"http://127.0.0.1:{port}"
        try:
            rows = extraction(url, model, [int(b) for b in args.batches.split(",")], args.queries)
            load = load_test(url, args.clients, args.seconds, args.load_batch)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    save_record("http-throughput", {"extraction": rows, "load_test": load})
    print(
        markdown_table(
            ["batch", "queries", "time", "queries/s (HTTP)", "queries/s (in-process)", "ratio"],
            [
                [
                    r["batch"],
                    f"{r['queries']:,}",
                    f"{r['seconds']:.2f} s",
                    f"{r['qps']:,.0f}",
                    f"{r['local_qps']:,.0f}",
                    f"{r['local_qps'] / r['qps']:.1f}x",
                ]
                for r in rows
            ],
        )
    )
    print(
        markdown_table(
            ["clients", "time", "batch", "requests", "errors", "queries/s", "p50", "p99", "max"],
            [
                [
                    load["clients"],
                    f"{load['seconds']:.0f} s",
                    load["batch"],
                    f"{load['requests']:,}",
                    load["errors"],
                    f"{load['queries_per_s']:,.0f}",
                    f"{load['p50_ms']:.1f} ms",
                    f"{load['p99_ms']:.1f} ms",
                    f"{load['max_ms']:.1f} ms",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
