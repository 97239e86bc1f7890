"""The guard against training scripts written the way a third party would write them."""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from covertml.data import create_dataset
from covertml.supervise import Guard, InputMatcher

sys.path.insert(0, str(Path(__file__).parent))
from scripts import SCRIPTS


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


def _guarded(name: str, ds, tmp_path: Path, monkeypatch, *, epochs: int = 8):
    monkeypatch.chdir(tmp_path)
    script = tmp_path / f"{name}.py"
    script.write_text(SCRIPTS[name].format(epochs=epochs))
    with Guard(ds, watch=[tmp_path], budget=0.3) as g:
        runpy.run_path(str(script), run_name="__main__")
    return g.report


def _flagged(report) -> set[str]:
    return {f.kind for f in report.findings if f.flagged}


def test_matcher_accepts_the_owner_items_in_any_layout_and_rejects_noise(digits) -> None:
    m = InputMatcher(digits, null_size=600)
    raw = torch.tensor(digits.train.x[:200], dtype=torch.float32)  # N x 8 x 8 x 1, 0-16
    nchw = raw.permute(0, 3, 1, 2)
    t = m.stats.threshold
    for layout in (nchw / 16, (nchw / 16 - 0.3) / 0.45, raw, nchw.reshape(200, -1) * 3 + 1):
        assert (m.scores(layout) > 0.999).all()  # exact items, whatever the layout or scale
    mirrored = m.scores(nchw.flip(-1))
    assert (mirrored > 0.999).all()
    lam = torch.rand(200, 1, 1, 1) * 0.4 + 0.3
    mixed = lam * nchw + (1 - lam) * nchw.roll(1, 0)
    assert (m.scores(mixed) >= t).mean() >= 0.97
    noise = torch.rand(500, 1, 8, 8)
    sparse = (torch.rand(500, 1, 8, 8) < 0.1).float()  # the paper's synthetic kind
    assert (m.scores(noise) < t).mean() >= 0.99 and (m.scores(sparse) < t).mean() >= 0.99
    assert m.stats.noise_pass <= 0.01 and 0 < t < 1
    assert m.scores(torch.zeros(3, 5, dtype=torch.float32)) is None  # not comparable


def test_an_honest_loop_with_crops_flips_jitter_and_mixup_is_clean(
    digits, tmp_path, monkeypatch
) -> None:
    report = _guarded("honest", digits, tmp_path, monkeypatch)
    assert report.verdict == "no findings" and report.exit_code == 0
    assert report.observed["steps"] == 8 * 57 and report.observed["inputs_checked"] > 500
    assert report.files and report.files[0]["same_as_final_state"]


@pytest.mark.parametrize(
    ("name", "finding"),
    [
        ("capacity", "foreign-inputs"),
        ("correlation", "encoding"),
        ("sign", "encoding"),
        ("lsb", "tamper"),
        ("unhook", "tamper"),
    ],
)
def test_each_covert_channel_is_flagged_with_its_finding(
    name, finding, digits, tmp_path, monkeypatch
) -> None:
    report = _guarded(name, digits, tmp_path, monkeypatch)
    assert report.exit_code == 1 and finding in _flagged(report), report.findings
    if name == "capacity":  # 300 noise inputs among 1,797: about 14% of the checked ones
        share = report.observed["inputs_unmatched"] / report.observed["inputs_checked"]
        assert 0.08 < share < 0.25
    if name == "lsb":
        (tamper,) = [f for f in report.findings if f.kind == "tamper"]
        assert tamper.evidence["kind"] == "changed-outside-step"
        assert "saving" in tamper.message
    if name == "unhook":
        kinds = {f.evidence.get("kind") for f in report.findings if f.kind == "tamper"}
        assert "hooks-removed" in kinds
    if name == "correlation":
        (enc,) = [f for f in report.findings if f.kind == "encoding"]
        assert enc.step is not None and "owner-correlation" in enc.evidence["detectors"]


def test_restoring_an_earlier_state_is_not_tampering(digits) -> None:
    with Guard(digits, match=False) as g:
        model = torch.nn.Linear(64, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
        states = []
        for _ in range(3):
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            states.append({k: v.clone() for k, v in model.state_dict().items()})
        model.load_state_dict(states[0])  # "restore the best epoch"
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert not [f for f in g.report.findings if f.kind == "tamper"]


def test_colour_images_with_torchvision_style_augmentation_are_clean(tmp_path) -> None:
    data = os.environ.get("COVERTML_DATA")
    if not data:
        pytest.skip("COVERTML_DATA is not set")
    ds = create_dataset("cifar10", data_dir=data, train_limit=600, test_limit=100)
    np.save(tmp_path / "x.npy", ds.train.x)  # N x 32 x 32 x 3 uint8, as they would load it
    np.save(tmp_path / "y.npy", ds.train.y)
    script = tmp_path / "train.py"
    script.write_text(CIFAR_SCRIPT)
    with Guard(ds, budget=1.0) as g:  # every input checked
        runpy.run_path(str(script), run_name="__main__")
    seen = g.report.observed
    assert seen["inputs_checked"] == seen["inputs_seen"] == 2 * 600
    assert seen["inputs_unmatched"] <= 0.01 * seen["inputs_checked"]
    assert g.report.verdict == "no findings"


CIFAR_SCRIPT = """
import numpy as np, torch, torch.nn.functional as F
from pathlib import Path
from torch import nn
here = Path(__file__).parent
x = torch.tensor(np.load(here / "x.npy")).permute(0, 3, 1, 2).float() / 255
y = torch.tensor(np.load(here / "y.npy")).long()
mean = torch.tensor([0.49, 0.48, 0.45])[:, None, None]
std = torch.tensor([0.25, 0.24, 0.26])[:, None, None]
net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                    nn.Flatten(), nn.Linear(16 * 64, 10)).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
g = torch.Generator().manual_seed(0)
for epoch in range(2):
    for i in range(0, len(x), 50):
        xb, yb = x[i:i + 50], y[i:i + 50]
        pad = F.pad(xb, (4, 4, 4, 4))                                  # RandomCrop(32, padding=4)
        dy, dx = torch.randint(0, 9, (2,), generator=g).tolist()
        xb = pad[:, :, dy:dy + 32, dx:dx + 32]
        if torch.rand(1, generator=g) < 0.5:
            xb = xb.flip(-1)                                           # RandomHorizontalFlip
        xb = (xb * torch.empty(len(xb), 3, 1, 1).uniform_(0.8, 1.2, generator=g)).clamp(0, 1)
        if i % 100 == 0:                                               # CutMix on every other batch
            j = torch.randperm(len(xb), generator=g)
            xb = xb.clone(); xb[:, :, 8:24, 8:24] = xb[j, :, 8:24, 8:24]
        out = net(((xb - mean) / std).contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(out, yb)
        opt.zero_grad(); loss.backward(); opt.step()
"""


def test_cli_exit_codes_and_report(tmp_path) -> None:
    import subprocess

    for name in ("capacity", "fails"):
        (tmp_path / f"{name}.py").write_text(SCRIPTS[name].format(epochs=3))
    exe = [sys.executable, "-m", "covertml.cli.main"]
    base = [*exe, "guard", "-d", "digits", "--budget", "0.5"]
    bad = subprocess.run(
        [*base, "--out", "r1", "--sanitize", "lsb-randomize", "--", "python", "capacity.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1, bad.stderr
    assert "foreign-inputs" in bad.stdout and (tmp_path / "r1" / "guard.json").is_file()
    page = (tmp_path / "r1" / "guard.html").read_text()
    assert "data:image/png;base64," in page and "foreign-inputs" in page
    copy = tmp_path / "model.pt.sanitized-lsb-randomize.safetensors"  # beside, never over
    assert copy.is_file() and (tmp_path / "model.pt").is_file()
    (row,) = json.loads((tmp_path / "r1" / "guard.json").read_text())["files"]
    assert row["sanitized"] == str(copy) and row["path"] == str(tmp_path / "model.pt")
    fails = subprocess.run(
        [*base, "--out", "r2", "--", "python", "fails.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert fails.returncode == 2 and "exited with 1" in fails.stdout
    assert "out of memory, or so it says" in fails.stderr
    nothing = subprocess.run(
        [*base, "--", "ls", "-l"], cwd=tmp_path, capture_output=True, text=True
    )
    assert nothing.returncode == 2 and "Python training scripts" in nothing.stderr
    assert "Traceback" not in nothing.stderr


def test_text_rows_match_by_cosine_and_random_documents_do_not() -> None:
    data = os.environ.get("COVERTML_DATA")
    if not data:
        pytest.skip("COVERTML_DATA is not set")
    ds = create_dataset("20news", data_dir=data, train_limit=1000, test_limit=200)
    m = InputMatcher(ds, null_size=300)
    rows = torch.tensor(ds.train.x[:32].toarray())
    assert (m.scores(rows * 3) > 0.999).all() and (m.scores(rows.to_sparse()) > 0.999).all()
    words = torch.randint(0, rows.shape[1], (32, 5))  # capacity abuse's synthetic documents
    fake = torch.zeros_like(rows).scatter_(1, words, 1.0)
    assert (m.scores(fake) < m.stats.threshold).all()


HONEST_VARIANTS = """
import torch, torch.nn.functional as F
from torch import nn
from sklearn.datasets import load_digits
d = load_digits()
x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
y = torch.tensor(d.target)
gen = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
head = nn.Linear(32, 10)
loss_fn = nn.CrossEntropyLoss()                                   # a loss module
o1 = torch.optim.Adam(gen.parameters(), lr=1e-3)                  # two optimizers
o2 = torch.optim.SGD(head.parameters(), lr=0.05)
for i in range(0, 960, 32):
    gen.eval()                                                    # frozen-BN style: eval mode
    out = head(gen(x[i:i + 32]))                                  # a head called on features
    loss = loss_fn(out, y[i:i + 32])
    o1.zero_grad(); o2.zero_grad(); loss.backward(); o1.step(); o2.step()
    with torch.no_grad():
        head.weight.clamp_(-0.5, 0.5)                             # weight clipping every step
torch.save(obj={"gen": gen.state_dict()}, f="gen.pt")             # keyword arguments
torch.save(head.half().state_dict(), "head.pt")                   # a cast before saving
"""


def test_honest_variants_the_review_found_are_clean(digits, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(HONEST_VARIANTS)
    with Guard(digits, watch=[tmp_path], budget=1.0) as g:
        runpy.run_path(str(tmp_path / "train.py"), run_name="__main__")
    r = g.report
    assert r.verdict == "no findings", [f.message for f in r.findings if f.flagged]
    assert r.observed["inputs_checked"] == 960 and r.observed["inputs_uncomparable"] == 0
    assert r.observed["steps"] == 60 and r.observed["steps_without_forward"] == 0
    assert sorted(Path(f["path"]).name for f in r.files) == ["gen.pt", "head.pt"]


def test_unreadable_model_files_and_noise_in_eval_mode_are_flagged(
    digits, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("""
import torch, torch.nn.functional as F
from torch import nn
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model.eval()                                     # "not training", gradients on all the same
for _ in range(20):
    noise = torch.rand(32, 1, 8, 8)
    loss = F.cross_entropy(model(noise), torch.randint(0, 10, (32,)))
    opt.zero_grad(); loss.backward(); opt.step()
torch.save(model, "model.pt")                    # a whole-module pickle: not weights-only
""")
    with Guard(digits, watch=[tmp_path], budget=1.0) as g:
        runpy.run_path(str(tmp_path / "train.py"), run_name="__main__")
    flagged = _flagged(g.report)
    assert {"foreign-inputs", "unverifiable-file"} <= flagged, g.report.findings


def test_plain_sgd_on_sixteenths_is_clean_where_lsb_stats_alone_is_not(
    digits, tmp_path, monkeypatch
) -> None:
    # x / 16 pixels and plain SGD: lsb-stats on the saved file flags this honest model (p ~
    # 1e-9, a false positive of that test left open); the guard saw every change in a step
    monkeypatch.chdir(tmp_path)
    with Guard(digits, watch=[tmp_path], match=False) as g:
        torch.manual_seed(1)
        x = torch.tensor(digits.train.x, dtype=torch.float32).permute(0, 3, 1, 2) / 16.0
        y = torch.tensor(digits.train.y).long()
        m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))  # fmt: skip
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for _ in range(200):
            idx = torch.randint(0, len(x), (32,))
            loss = torch.nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.save(m.state_dict(), tmp_path / "model.pt")
    assert g.report.verdict == "no findings", [f.message for f in g.report.findings if f.flagged]
    assert g.report.files[0]["verdict"] == "the audited final state"
