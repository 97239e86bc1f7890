"""Owner audits and the scanner on constructed tensors whose answer is known independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from covertml.attacks.secrets import secret_from_dataset
from covertml.audit import ScanContext, create_detector, scan
from covertml.data import create_dataset
from covertml.errors import ConfigError


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


def _p(report) -> float:
    return report.findings[0].p_value


def test_owner_correlation_finds_images_at_any_offset(digits) -> None:
    pix = _images(digits, 100, 1).reshape(-1)
    noise = np.random.default_rng(2).normal(0, 0.002, 17 + pix.size)
    w = noise.copy()
    w[17:] += 0.01 * (pix - 128) / 128  # offset 17, scaled and shifted: as the attack does
    ctx = ScanContext(
        {"a.weight": torch.tensor(w[:6400], dtype=torch.float32).reshape(100, 64)}, dataset=digits
    )
    report = create_detector("owner-correlation").run(ctx)
    # random items: the evidence is capped by the 360 held-out items (each encoded item can
    # only say "training, not held-out", worth log10(1797 / 1437) = 0.1 decades)
    assert report.flagged and _p(report) < 1e-6
    top = report.findings[0].evidence
    assert top["item_offset"] == 17 and top["representation"] == "grey"
    # the best-matched training items are among the 100 random items it holds
    picked = set(np.random.default_rng(1).choice(len(digits.train), 100, replace=False).tolist())
    assert {m["train_index"] for m in top["best_train_matches"]} <= picked
    honest = ScanContext(
        {"a.weight": torch.tensor(noise[:6400], dtype=torch.float32).reshape(100, 64)},
        dataset=digits,
    )
    quiet = create_detector("owner-correlation").run(honest)
    assert not quiet.flagged and _p(quiet) > 1e-3


def test_owner_audit_p_values_do_not_pile_up_on_noise(digits) -> None:
    """Weights that encode nothing: the smallest corrected p-values stay large."""
    lows = []
    for seed in range(12):
        w = np.random.default_rng(100 + seed).normal(0, 0.05, 8192).astype(np.float32)
        ctx = ScanContext({"w": torch.from_numpy(w).reshape(128, 64)}, dataset=digits, seed=seed)
        report = create_detector("owner-correlation").run(ctx)
        assert not report.flagged
        lows.append(min(f.p_value for f in report.findings))
    assert sum(p < 0.1 for p in lows) <= 3, lows


def test_owner_sign_reads_pixel_bytes_from_signs(digits) -> None:
    pix = secret_from_dataset(digits, max_items=40).values.astype(np.uint8)  # the first 40
    bits = np.unpackbits(pix)  # MSB first, 8 per pixel
    magnitude = np.abs(np.random.default_rng(4).normal(0, 0.05, bits.size + 5))
    w = magnitude.copy()
    w[5:] *= np.where(bits == 1, 1.0, -1.0)  # signs spell the bytes from offset 5
    w[:5] *= -1
    t = torch.tensor(w[: 20 * 1024], dtype=torch.float32).reshape(20, 1024)
    report = create_detector("owner-sign").run(ScanContext({"a.weight": t}, dataset=digits))
    assert report.flagged and _p(report) < 1e-20
    assert report.findings[0].evidence["bits"] == "MSB-first, bit offset 5"
    plain = torch.tensor(np.random.default_rng(5).normal(0, 0.05, 20 * 1024), dtype=torch.float32)
    ctx = ScanContext({"a.weight": plain.reshape(20, 1024)}, dataset=digits)
    assert not create_detector("owner-sign").run(ctx).flagged


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
