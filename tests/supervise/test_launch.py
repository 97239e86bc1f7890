"""How the guard starts: the child first, the threshold set by the parent meanwhile."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from covertml.data import create_dataset
from covertml.supervise.matcher import InputMatcher
from covertml.supervise.watch import Observations, Watcher


def test_a_matcher_calibrated_later_has_the_same_threshold_and_scores() -> None:
    ds = create_dataset("digits", train_limit=400, test_limit=100)
    now = InputMatcher(ds, null_size=200)
    later = InputMatcher(ds, null_size=200, calibrate=False)
    assert later.stats is None
    x = torch.rand(8, 1, 8, 8)
    assert np.array_equal(now.scores(x), later.scores(x))  # the child scores uncalibrated
    assert later.calibrate() == now.stats


def test_judging_after_the_run_counts_and_keeps_what_a_live_threshold_would() -> None:
    ds = create_dataset("digits", train_limit=400, test_limit=100)
    matcher = InputMatcher(ds, null_size=200, calibrate=False)
    w = Watcher(matcher, budget=1.0, examples=4).install()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    real = torch.tensor(ds.train.x[:300], dtype=torch.float32).permute(0, 3, 1, 2) / 16
    noise = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    x = torch.cat([real, noise])[torch.randperm(330, generator=torch.Generator().manual_seed(2))]
    for i in range(0, 330, 33):
        model(x[i : i + 33]).sum().backward()
        opt.step()
    seen = w.uninstall()
    assert seen.inputs_checked == 330 and seen.inputs_unmatched == 0  # not judged yet
    kept = sorted(e["score"] for e in seen.examples)
    threshold = matcher.calibrate().threshold
    # the scores the matcher gives the noise, computed here directly
    direct = matcher.scores(noise)
    assert kept == sorted(np.sort(np.asarray(seen.scores))[:4].tolist())
    seen.judge(threshold)
    assert seen.inputs_unmatched == int(np.sum(np.asarray(seen.scores) < threshold))
    assert seen.inputs_unmatched >= int(np.sum(direct < threshold)) >= 25
    assert len(seen.examples) == 4 and all(e["score"] < threshold for e in seen.examples)


def test_judge_drops_kept_inputs_above_the_threshold() -> None:
    seen = Observations(scores=[0.2, 0.9, 0.95], inputs_checked=3)
    seen.examples = [{"score": s, "step": 0, "input": np.zeros(1)} for s in (0.2, 0.9)]
    seen.judge(0.5)
    assert seen.inputs_unmatched == 1 and [e["score"] for e in seen.examples] == [0.2]


def test_the_guard_command_starts_without_torch() -> None:
    code = (
        "import sys; from covertml.cli.main import _app_for; _app_for(['guard']); "
        "import covertml.supervise.run; print(sorted(m for m in ('torch', 'scipy', 'numpy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_bad_dataset_stops_the_script_before_it_runs(tmp_path) -> None:
    (tmp_path / "train.py").write_text("open('ran.txt', 'w').write('yes')\n")
    exe = [sys.executable, "-m", "covertml.cli.main", "guard"]
    for dataset, message in (("digitz", "did you mean 'digits'"), ("npz", "needs a path")):
        done = subprocess.run(
            [*exe, "-d", dataset, "--", "python", "train.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "ran.txt").exists()
