"""The Ray engine against the local one, on a local Ray cluster started by the test itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from covertml.cli.demo_cmd import DEMO_GRID
from covertml.errors import ConfigError
from covertml.runner import parse_grid, run_grid
from covertml.runner.jobs import plan_jobs
from covertml.runner.ray_engine import job_resources

ray = pytest.importorskip("ray")

THREADS = 2  # every job trains with two torch threads under both engines
# the demo's own grid (every attack, the HTTP oracle, two sanitizers, the scanner), made small
SMALL = "epochs = 4\ntrain_limit = 500\ntest_limit = 150"
GRID_TEXT = DEMO_GRID.format(epochs=SMALL, seed=0) + f"\n[resources.digits]\ncpus = {THREADS}\n"
VOLATILE = {"pid", "finished_at", "trace", "endpoint"}  # endpoint: a free loopback port


def _stable(x: Any) -> Any:
    """A record without what depends on when and where it ran (times, process ids)."""
    if isinstance(x, dict):
        return {
            k: _stable(v) for k, v in x.items() if k not in VOLATILE and not k.endswith("seconds")
        }
    if isinstance(x, list):
        return [_stable(v) for v in x]
    return x


def _records(run: Path) -> list[dict[str, Any]]:
    out = []
    for r in json.loads((run / "results.json").read_text()):
        if r["cell"]["attack_options"].get("passphrase"):
            # an encrypted payload has a fresh salt and nonce on every run (as it must): its
            # low bits, and so the scan's statistics of them, differ between any two runs
            r = {k: v for k, v in r.items() if k != "scan"}
        out.append(_stable(r))
    return out


@pytest.fixture(scope="module")
def cluster() -> Any:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 2**20,
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        run_grid(parse_grid(GRID_TEXT), out)
    finally:
        torch.set_num_threads(before)
    return out


def test_ray_engine_gives_the_local_engines_records(
    cluster: str, local_run: Path, tmp_path: Path
) -> None:
    grid = parse_grid(GRID_TEXT)
    summary = run_grid(grid, tmp_path, engine="ray")
    assert (summary.total, summary.done, summary.failed) == (len(grid.cells()), 21, 0)
    ours, theirs = _records(tmp_path), _records(local_run)
    assert [r["id"] for r in ours] == [r["id"] for r in theirs]
    assert all(r["status"] == "ok" for r in ours)
    for a, b in zip(ours, theirs, strict=True):
        assert a == b, a["id"]
    # the table has the local engine's shape: same columns, same rows
    assert (tmp_path / "results.csv").read_text().splitlines()[0] == (
        (local_run / "results.csv").read_text().splitlines()[0]
    )
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["engine"] == "ray" and info["finished"]
    assert not list(tmp_path.glob(".ray-*"))  # the shared-folder marker is cleaned up


def test_a_killed_ray_run_resumes_to_completion(
    cluster: str, local_run: Path, tmp_path: Path
) -> None:
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text(GRID_TEXT)
    out = tmp_path / "run"
    total = len(parse_grid(GRID_TEXT).cells())
    cmd = [sys.executable, "-m", "covertml", "reproduce", "-c", str(grid_file), "-o", str(out)]
    cmd += ["--engine", "ray", "--address", cluster, "--no-report"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    recorded = 0
    while time.monotonic() < deadline and proc.poll() is None:
        recorded = len(list(out.glob("cells/**/record.json")))
        if recorded:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver dies mid-run, as with a lost login
    proc.wait()
    assert 0 < recorded < total, f"{recorded} of {total} cells recorded before the kill"
    summary = run_grid(parse_grid(GRID_TEXT), out, engine="ray")
    assert summary.resumed
    assert (summary.done, summary.failed) == (total, 0)
    ours, theirs = _records(out), _records(local_run)
    for a, b in zip(ours, theirs, strict=True):
        assert a == b, a["id"]


def test_resources_come_from_the_grid_or_follow_the_device() -> None:
    grid = parse_grid(
        '[datasets.digits]\ndevice = "cuda"\n[datasets.cifar10]\n[resources.cifar10]\ncpus = 3'
    )
    jobs = {j.dataset: j for j in plan_jobs(grid)}
    assert job_resources(grid, jobs["digits"]) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert job_resources(grid, jobs["cifar10"]) == {"num_cpus": 3.0, "num_gpus": 0.0}
    # auto asks for a GPU only where the cluster has one
    auto = parse_grid("[datasets.digits]")
    job = plan_jobs(auto)[0]
    assert job_resources(auto, job)["num_gpus"] == 0.0
    assert job_resources(auto, job, cluster_gpus=4)["num_gpus"] == 1.0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[datasets.digits]\n[resources.cifar10]\ncpus = 1", "names no dataset"),
        ("[datasets.digits]\n[resources.digits]\nmemory = 1", "only cpus and gpus"),
        ("[datasets.digits]\n[resources.digits]\ngpus = -1", "number >= 0"),
        ('[datasets.digits]\n[resources.digits]\ncpus = "two"', "number >= 0"),
        ("[datasets.digits]\n[resources.digits]\ncpus = 0", "asks for nothing"),
    ],
)
def test_bad_resources_are_one_line_errors(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_grid(text)


def test_engine_and_address_are_checked(tmp_path: Path) -> None:
    grid = parse_grid("[datasets.digits]")
    with pytest.raises(ConfigError, match="unknown engine"):
        run_grid(grid, tmp_path, engine="dask")
    with pytest.raises(ConfigError, match="--engine ray"):
        run_grid(grid, tmp_path, address="auto")


def test_a_job_the_cluster_cannot_hold_is_refused_not_waited_for(
    cluster: str, tmp_path: Path
) -> None:
    grid = parse_grid("[datasets.digits]\nepochs = 1\n[resources.digits]\ngpus = 1")
    with pytest.raises(ConfigError, match=r"asks for 1 GPU\(s\).*has 0 GPU\(s\)"):
        run_grid(grid, tmp_path, engine="ray")
    assert not list(tmp_path.glob("cells/**/record.json"))
    assert not list(tmp_path.glob(".ray-*"))


def test_without_ray_the_engine_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'covertml\[ray\]'"):
        run_grid(parse_grid("[datasets.digits]"), tmp_path / "run", engine="ray")
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
