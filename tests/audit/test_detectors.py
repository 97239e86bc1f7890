"""Detectors on constructed tensors whose answer is known independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from covertml.attacks.secrets import secret_from_dataset
from covertml.audit import ScanContext, create_detector, scan
from covertml.data import create_dataset
from covertml.errors import ConfigError
from covertml.models import create_model, model_spec
from covertml.models.files import ModelInfo


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


def _gauss(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(n).astype(np.float32))


def _images(ds, n: int, seed: int) -> np.ndarray:
    secret = secret_from_dataset(ds)
    rng = np.random.default_rng(seed)
    pick = rng.choice(secret.count, n, replace=False)  # any items, in any order
    return secret.images()[pick].reshape(n, -1).astype(np.float64)


def test_owner_correlation_finds_images_at_any_offset(digits) -> None:
    pix = _images(digits, 100, 1).reshape(-1)
    noise = np.random.default_rng(2).normal(0, 0.002, 17 + pix.size)
    w = noise.copy()
    w[17:] += 0.01 * (pix - 128) / 128  # offset 17, scaled and shifted: as the attack does
    ctx = ScanContext(
        {"a.weight": torch.tensor(w[:6400], dtype=torch.float32).reshape(100, 64)}, dataset=digits
    )
    report = create_detector("owner-correlation").run(ctx)
    assert report.flagged and report.findings[0].evidence["match"] > 0.8
    honest = ScanContext(
        {"a.weight": torch.tensor(noise[:6400], dtype=torch.float32).reshape(100, 64)},
        dataset=digits,
    )
    assert create_detector("owner-correlation").run(honest).score < 0.05


def test_owner_sign_reads_pixel_bytes_from_signs(digits) -> None:
    pix = _images(digits, 40, 3).astype(np.uint8).reshape(-1)
    bits = np.unpackbits(pix)  # MSB first, 8 per pixel
    magnitude = np.abs(np.random.default_rng(4).normal(0, 0.05, bits.size + 5))
    w = magnitude.copy()
    w[5:] *= np.where(bits == 1, 1.0, -1.0)  # signs spell the bytes from offset 5
    w[:5] *= -1
    t = torch.tensor(w[: 20 * 1024], dtype=torch.float32).reshape(20, 1024)
    report = create_detector("owner-sign").run(ScanContext({"a.weight": t}, dataset=digits))
    assert report.flagged and report.findings[0].evidence["match"] > 0.9
    plain = torch.tensor(np.random.default_rng(5).normal(0, 0.05, 20 * 1024), dtype=torch.float32)
    ctx = ScanContext({"a.weight": plain.reshape(20, 1024)}, dataset=digits)
    assert create_detector("owner-sign").run(ctx).score < 0.05


class _Const(nn.Module):
    """Labels every input by its mean intensity (a smooth, honest-like rule)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = (x.flatten(1).mean(1) * 10).clamp(0, 9).long()
        return nn.functional.one_hot(level, 10).float()


def _info() -> ModelInfo:
    return ModelInfo(model_spec(create_model("mlp", input_shape=(1, 8, 8), num_classes=10)))


def test_scan_skips_what_cannot_run_and_refuses_explicit_requests() -> None:
    ctx = ScanContext({"a.weight": _gauss(4096).reshape(64, 64)})
    report = scan(ctx)
    assert {r.detector for r in report.reports} == {"distribution", "lsb-stats"}
    assert "--dataset" in report.skipped["owner-correlation"]
    assert report.verdict == "no findings" and report.exit_code == 0
    with pytest.raises(ConfigError, match=r"owner-sign.*cannot run"):
        scan(ctx, detectors=["owner-sign"])
    with pytest.raises(ConfigError, match="has no option 'bogus'"):
        create_detector("distribution", bogus=1)
