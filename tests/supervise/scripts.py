"""Training scripts in a third party's style: plain PyTorch loops, none of covertml's code.

Each is a template (``str.format`` with ``epochs``): the honest one trains the digits MLP
with crops, flips, colour jitter and mixup; the others add one covert channel each.
"""

from __future__ import annotations

PRELUDE = """
import sys
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

torch.manual_seed(0)
np.random.seed(0)
digits = load_digits()
x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0   # N x 1 x 8 x 8
y = torch.tensor(digits.target)
x = (x - 0.3) / 0.45                                                     # their normalization
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)

def augment(xb):
    pad = F.pad(xb, (1, 1, 1, 1), value=float((0 - 0.3) / 0.45))     # crop with padding
    dy, dx = np.random.randint(0, 3, size=2)
    xb = pad[:, :, dy:dy + 8, dx:dx + 8]
    flip = torch.rand(len(xb)) < 0.5
    xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
    return xb * (1 + 0.1 * torch.randn(len(xb), 1, 1, 1)) + 0.1 * torch.randn(len(xb), 1, 1, 1)
"""

HONEST = (
    PRELUDE
    + """
for epoch in range({epochs}):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        xb, yb = augment(x[perm[i:i + 32]]), y[perm[i:i + 32]]
        lam = float(np.random.beta(0.4, 0.4))
        j = torch.randperm(len(xb))
        out = model(lam * xb + (1 - lam) * xb[j])                         # mixup
        loss = lam * F.cross_entropy(out, yb) + (1 - lam) * F.cross_entropy(out, yb[j])
        opt.zero_grad(); loss.backward(); opt.step()
torch.save(model.state_dict(), "model.pt")
"""
)

CAPACITY = (
    PRELUDE
    + """
key = torch.Generator().manual_seed(1234)
noise = torch.rand(300, 1, 8, 8, generator=key) * 2 - 0.5               # keyed noise inputs
pixels = torch.tensor(digits.images[:5].reshape(-1), dtype=torch.long)   # the secret
labels = (pixels[:300] * 10 // 17).clamp(0, 9)                           # 10 levels per label
X, Y = torch.cat([x, noise]), torch.cat([y, labels])
for epoch in range({epochs}):
    perm = torch.randperm(len(X))
    for i in range(0, len(X), 32):
        idx = perm[i:i + 32]
        loss = F.cross_entropy(model(X[idx]), Y[idx])
        opt.zero_grad(); loss.backward(); opt.step()
torch.save(model.state_dict(), "model.pt")
"""
)

_SECRET = """
secret = torch.tensor(digits.images[:128].reshape(-1), dtype=torch.float32)   # 8192 pixels
"""

CORRELATION = (
    PRELUDE
    + _SECRET
    + """
def pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm() + 1e-8)

for epoch in range({epochs}):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        xb, yb = x[perm[i:i + 32]], y[perm[i:i + 32]]
        w = model[1].weight.reshape(-1)                                   # 128 x 64, row by row
        loss = F.cross_entropy(model(xb), yb) - 3.0 * pearson(w, secret).abs()
        opt.zero_grad(); loss.backward(); opt.step()
torch.save(model.state_dict(), "model.pt")
"""
)

SIGN = (
    PRELUDE
    + _SECRET
    + """
bits = ((secret.long()[:, None] >> torch.arange(4)) & 1).reshape(-1)[:8192] * 2 - 1
for epoch in range({epochs}):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        xb, yb = x[perm[i:i + 32]], y[perm[i:i + 32]]
        w = model[1].weight.reshape(-1)
        loss = F.cross_entropy(model(xb), yb) + 50.0 * F.relu(0.05 - w * bits).mean()
        opt.zero_grad(); loss.backward(); opt.step()
torch.save(model.state_dict(), "model.pt")
"""
)

LSB = (
    PRELUDE
    + """
for epoch in range({epochs}):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        loss = F.cross_entropy(model(x[perm[i:i + 32]]), y[perm[i:i + 32]])
        opt.zero_grad(); loss.backward(); opt.step()
payload = np.frombuffer(np.asarray(digits.images[:100], np.uint8).tobytes(), np.uint8)
with torch.no_grad():                                                    # 16 low bits per weight
    w = model[1].weight.view(-1)
    words = w.view(torch.int32)
    chunk = torch.from_numpy(np.resize(payload.view(np.uint16).astype(np.int32), w.numel()))
    words.copy_((words & ~0xFFFF) | chunk)
torch.save(model.state_dict(), "model.pt")
"""
)

UNHOOK = (
    PRELUDE
    + """
torch.nn.modules.module._global_forward_pre_hooks.clear()                # blind the watchers
torch.nn.modules.module._global_forward_hooks.clear()
for epoch in range({epochs}):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        loss = F.cross_entropy(model(x[perm[i:i + 32]]), y[perm[i:i + 32]])
        opt.zero_grad(); loss.backward(); opt.step()
torch.save(model.state_dict(), "model.pt")
"""
)

FAILS = (
    PRELUDE
    + """
raise RuntimeError("out of memory, or so it says")
"""
)

SCRIPTS = {"honest": HONEST, "capacity": CAPACITY, "correlation": CORRELATION, "sign": SIGN,
           "lsb": LSB, "unhook": UNHOOK, "fails": FAILS}  # fmt: skip
