"""Wall time of a training script guarded (``covertml guard``) against the same script alone.

Usage:
    python bench/guard_overhead.py                        # digits MLP
    python bench/guard_overhead.py --data-dir ../shared/data --only cifar10

Both runs happen in this process's session, one after the other, as subprocesses: the
script alone (``python train.py``) and under ``covertml guard -d DATASET``. The scripts
are plain PyTorch loops written as a third party would (no covertml code): the digits MLP
(30 epochs, batch 32, crops, flips, jitter, mixup) and a CIFAR-10 CNN in the CPU
configuration (5,000 images, 12 epochs as in configs/cpu/cifar10.toml, crop with padding, flip,
batch 128). Reported: the
whole command's wall time and the training loop's own (the script prints it), and the
guard's ratios.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import markdown_table, save_record

DIGITS = """
import time, numpy as np, torch, torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
torch.manual_seed(0); np.random.seed(0)
d = load_digits()
x = (torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0 - 0.3) / 0.45
y = torch.tensor(d.target)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
start = time.perf_counter()
for epoch in range(30):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        xb, yb = x[perm[i:i + 32]], y[perm[i:i + 32]]
        pad = F.pad(xb, (1, 1, 1, 1), value=-0.667)
        dy, dx = np.random.randint(0, 3, size=2)
        xb = pad[:, :, dy:dy + 8, dx:dx + 8]
        if np.random.rand() < 0.5:
            xb = xb.flip(-1)
        lam = float(np.random.beta(0.4, 0.4)); j = torch.randperm(len(xb))
        out = model(lam * xb + (1 - lam) * xb[j])
        loss = lam * F.cross_entropy(out, yb) + (1 - lam) * F.cross_entropy(out, yb[j])
        opt.zero_grad(); loss.backward(); opt.step()
print("loop_seconds", time.perf_counter() - start)
torch.save(model.state_dict(), "model.pt")
"""

CIFAR = """
import time, numpy as np, torch, torch.nn.functional as F
from torch import nn
torch.manual_seed(0)
x = torch.tensor(np.load("x.npy")).permute(0, 3, 1, 2).float() / 255
y = torch.tensor(np.load("y.npy")).long()
mean = torch.tensor([0.49, 0.48, 0.45])[:, None, None]
std = torch.tensor([0.25, 0.24, 0.26])[:, None, None]
def block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())
model = nn.Sequential(block(3, 32), block(32, 32), nn.MaxPool2d(2), block(32, 64), block(64, 64),
                      nn.MaxPool2d(2), block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(128, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
start = time.perf_counter()
for epoch in range(12):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 128):
        xb, yb = x[perm[i:i + 128]], y[perm[i:i + 128]]
        pad = F.pad(xb, (4, 4, 4, 4))
        dy, dx = np.random.randint(0, 9, size=2)
        xb = pad[:, :, dy:dy + 32, dx:dx + 32]
        if np.random.rand() < 0.5:
            xb = xb.flip(-1)
        loss = F.cross_entropy(model((xb - mean) / std), yb)
        opt.zero_grad(); loss.backward(); opt.step()
print("loop_seconds", time.perf_counter() - start)
torch.save(model.state_dict(), "model.pt")
"""


# glibc returns large freed blocks to the system unless its dynamic mmap threshold has
# grown; a process that freed big arrays early (the guarded child, after indexing the data)
# then trains with fewer page faults. --same-malloc fixes the thresholds for both runs.
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    loop = [
        float(line.split()[1])
        for line in done.stdout.splitlines()
        if line.startswith("loop_seconds")
    ]
    return wall, loop[0] if loop else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("COVERTML_DATA"))
    parser.add_argument("--only", default=None, help="digits or cifar10")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--same-malloc",
        action="store_true",
        help="fix glibc's mmap/trim thresholds in both runs (removes an allocator effect)",
    )
    parser.add_argument("--budget", type=float, default=None, help="default: the guard's")
    args = parser.parse_args()
    cases = [c for c in ("digits", "cifar10") if args.only in (None, c)]
    rows, record = [], {}
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            options: list[str] = []
            if case == "cifar10":
                if not args.data_dir:
                    print("skipping cifar10: no --data-dir")
                    continue
                from covertml.data import create_dataset

                ds = create_dataset(
                    "cifar10", data_dir=args.data_dir, train_limit=5000, test_limit=2000
                )
                np.save(work / "x.npy", ds.train.x)
                np.save(work / "y.npy", ds.train.y)
                options = [
                    "--data-dir",
                    args.data_dir,
                    "--option",
                    "train_limit=5000",
                    "--option",
                    "test_limit=2000",
                ]
            (work / "train.py").write_text(DIGITS if case == "digits" else CIFAR)
            alone, guarded = [], []
            for _ in range(args.repeats):
                env = {**os.environ, **FIXED_MALLOC} if args.same_malloc else None
                alone.append(timed([sys.executable, "train.py"], work, env))
                guarded.append(
                    timed(
                        [
                            sys.executable,
                            "-m",
                            "covertml.cli.main",
                            "guard",
                            "-d",
                            case,
                            *options,
                            *(["--budget", str(args.budget)] if args.budget else []),
                            "--out",
                            "report",
                            "--",
                            "python",
                            "train.py",
                        ],
                        work,
                        env,
                    )
                )
            a, g = np.mean(alone, axis=0), np.mean(guarded, axis=0)
            record[case] = {
                "alone": alone,
                "guarded": guarded,
                "budget": args.budget,
                "same_malloc": args.same_malloc,
            }
            rows.append(
                [
                    case,
                    f"{a[0]:.1f} s",
                    f"{g[0]:.1f} s",
                    f"{g[0] / a[0]:.2f}x",
                    f"{a[1]:.1f} s",
                    f"{g[1]:.1f} s",
                    f"{g[1] / a[1]:.2f}x",
                ]
            )
            print(case, rows[-1], flush=True)
    header = ["script", "alone", "guarded", "ratio", "loop alone", "loop guarded", "loop ratio"]
    print(markdown_table(header, rows))
    print(f"record: {save_record('guard_overhead', record)}")


if __name__ == "__main__":
    main()
