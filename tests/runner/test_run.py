"""The grid runner: every cell recorded, tables consistent with the models, resume, pool."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from covertml.data import create_dataset
from covertml.errors import ConfigError
from covertml.models.files import read_tensors
from covertml.runner import parse_grid, plan_jobs, run_grid

GRID = """
name = "t"
[datasets.digits]
epochs = 3
train_limit = 300
test_limit = 120
[attacks]
lsb = [{bits = 8}]
capacity = [{ratio = 1.0}]
[sanitizers]
none = [{}]
lsb-zero = [{bits = 16}]
"""


def _rows(run: Path) -> dict[str, dict[str, str]]:
    with open(run / "results.csv", newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    summary = run_grid(parse_grid(GRID), out)
    assert (summary.total, summary.done, summary.failed) == (6, 6, 0)
    return out


def test_every_cell_is_recorded_once_in_json_and_csv(finished: Path) -> None:
    ids = [c.id for c in parse_grid(GRID).cells()]
    rows = _rows(finished)
    assert sorted(rows) == sorted(ids)
    records = json.loads((finished / "results.json").read_text())
    assert [r["id"] for r in records] == ids  # grid order
    for cell_id in ids:
        assert (finished / "cells" / cell_id / "record.json").is_file()


def test_recorded_accuracy_is_the_saved_models_accuracy(finished: Path) -> None:
    """Recompute the honest model's accuracy from its file with plain numpy."""
    tensors, _ = read_tensors(finished / "models/digits/honest/seed0/model.safetensors")
    ds = create_dataset("digits", train_limit=300, test_limit=120)
    from covertml.models import create_model_for

    model = create_model_for(ds).eval()
    model.load_state_dict(tensors)
    from covertml.data.base import images_to_float

    with torch.no_grad():
        pred = model(torch.from_numpy(images_to_float(ds.test.x))).argmax(1).numpy()
    expected = float(np.mean(pred == ds.test.y))
    row = _rows(finished)["digits/honest/none/seed0"]
    assert float(row["test_accuracy"]) == pytest.approx(expected, abs=1e-6)
    assert float(row["delta_points"]) == 0.0


def test_lsb_model_is_the_honest_model_with_only_low_bits_changed(finished: Path) -> None:
    honest, _ = read_tensors(finished / "models/digits/honest/seed0/model.safetensors")
    lsb, _ = read_tensors(finished / "models/digits/lsb-bits=8/seed0/model.safetensors")
    changed = 0
    for name, a in honest.items():
        if a.dtype != torch.float32:
            continue
        x = a.numpy().view("<u4") ^ lsb[name].numpy().view("<u4")
        assert int((x >> 8).max()) == 0, name  # nothing above the 8 low bits moved
        changed += int(np.count_nonzero(x))
    assert changed > 1000


def test_payloads_and_sanitizers_in_the_table(finished: Path) -> None:
    rows = _rows(finished)
    lsb = rows["digits/lsb-bits=8/none/seed0"]
    assert lsb["recovered"] == "True" and float(lsb["mape"]) == 0.0
    gone = rows["digits/lsb-bits=8/lsb-zero-bits=16/seed0"]
    assert gone["recovered"] == "False" and "payload" in gone["error"]
    cap = rows["digits/capacity-ratio=1.0/none/seed0"]
    assert cap["recovered"] == "True" and int(cap["queries"]) > 0
    assert 0.5 < float(cap["m_over_n"]) <= 1.0  # whole images only: at most the ratio asked
    # lsb-zero on 16 low bits changes an honest MLP's accuracy by at most a few points
    base = float(rows["digits/honest/none/seed0"]["test_accuracy"])
    assert abs(float(rows["digits/honest/lsb-zero-bits=16/seed0"]["test_accuracy"]) - base) < 0.05
    assert (
        finished / "cells/digits/capacity-ratio=1.0/none/seed0/original_vs_recovered.png"
    ).is_file()


def test_a_second_run_does_nothing_and_changed_settings_are_refused(finished: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in finished.rglob("record.json")}
    summary = run_grid(parse_grid(GRID), finished)
    assert summary.resumed == 6 and summary.done == 6
    assert before == {p: p.stat().st_mtime_ns for p in finished.rglob("record.json")}
    with pytest.raises(ConfigError, match="other settings"):
        run_grid(parse_grid(GRID.replace("epochs = 3", "epochs = 4")), finished)


def test_a_failing_cell_is_recorded_and_the_rerun_retries_it(tmp_path: Path, monkeypatch) -> None:
    import covertml.defenses as defenses

    real = defenses.create_sanitizer

    def broken(name: str, **options):
        if name == "lsb-zero":
            raise RuntimeError("sanitizer exploded")
        return real(name, **options)

    grid = parse_grid(GRID.replace("capacity = [{ratio = 1.0}]\n", ""))
    monkeypatch.setattr(defenses, "create_sanitizer", broken)
    first = run_grid(grid, tmp_path)
    assert (first.done, first.failed) == (2, 2)
    assert "sanitizer exploded" in _rows(tmp_path)["digits/honest/lsb-zero-bits=16/seed0"]["error"]
    monkeypatch.setattr(defenses, "create_sanitizer", real)
    ok_record = tmp_path / "cells/digits/honest/none/seed0/record.json"
    before = ok_record.read_bytes()
    second = run_grid(grid, tmp_path)
    assert (second.done, second.failed, second.resumed) == (4, 0, 2)
    assert ok_record.read_bytes() == before  # only the failed cells ran again


def test_jobs_wait_for_the_models_they_build_on() -> None:
    grid = parse_grid(GRID.replace("name", "scan = true\nname"))
    jobs = {j.id: j for j in plan_jobs(grid)}
    assert next(iter(jobs)) == "digits/reference/seed0"
    assert jobs["digits/lsb-bits=8/seed0"].depends_on() == (
        "digits/honest/seed0",
        "digits/reference/seed0",
    )
    assert jobs["digits/reference/seed0"].train_seed == 1000


def test_process_pool_runs_the_same_cells_and_reports_progress(tmp_path: Path) -> None:
    seen = []
    summary = run_grid(parse_grid(GRID), tmp_path, jobs=2, threads=1, on_progress=seen.append)
    assert (summary.done, summary.failed) == (6, 0)
    assert [p.done for p in seen] == sorted(p.done for p in seen)  # never goes back
    assert seen[0].done == 0 and seen[-1].done == 6 and seen[-1].left == 0
    assert max(p.running for p in seen) >= 2  # two jobs at once
    etas = [p.eta_seconds for p in seen if p.eta_seconds is not None]
    assert etas and min(etas) >= 0 and seen[-1].eta_seconds == 0
    rows = _rows(tmp_path)
    assert rows["digits/lsb-bits=8/none/seed0"]["mape"] == "0"
    assert rows["digits/capacity-ratio=1.0/none/seed0"]["recovered"] == "True"


def test_killed_run_resumes_without_redoing_finished_cells(tmp_path: Path) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text(
        GRID.replace("epochs = 3", "epochs = 12").replace(
            "capacity = [{ratio = 1.0}]", "sign = [{lam = 10.0}, {lam = 20.0}, {lam = 30.0}]"
        )
    )
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "covertml",
        "reproduce",
        "-c",
        str(grid),
        "-o",
        str(out),
        "--no-report",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.rglob("record.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p: p.read_bytes() for p in out.rglob("record.json")}
    assert 2 <= len(kept) < 10, "the run should have been killed part-way"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(kept)} from before" in done.stdout.replace("\n", " ")
    assert len(list(out.rglob("record.json"))) == 10
    for path, content in kept.items():
        assert path.read_bytes() == content  # finished cells were not run again
    assert len(_rows(out)) == 10
