"""Detectors on constructed tensors whose answer is known independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from covertml.attacks.oracle import FunctionOracle
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


def test_distribution_ks_matches_the_closed_form_for_two_point_weights() -> None:
    rng = np.random.default_rng(0)
    two = np.where(rng.random(20_000) < 0.5, -1.0, 1.0) + rng.normal(0, 1e-3, 20_000)
    ctx = ScanContext({"a.weight": torch.tensor(two, dtype=torch.float32).reshape(200, 100)})
    report = create_detector("distribution").run(ctx)
    # z = +-1 after standardizing: the largest CDF gap is at -1, 0.5 - Phi(-1)
    assert report.score == pytest.approx(0.5 - stats.norm.cdf(-1.0), abs=0.01)
    assert report.flagged and report.findings[0].evidence["near_zero"] == 0.0
    gauss = ScanContext({"a.weight": _gauss(20_000).reshape(200, 100)})
    assert create_detector("distribution").run(gauss).score < 0.02


def test_distribution_against_an_identical_reference_is_zero() -> None:
    w = {"a.weight": _gauss(4096).reshape(64, 64) ** 3}  # far from Gaussian
    assert create_detector("distribution").run(ScanContext(w)).flagged
    same = create_detector("distribution").run(ScanContext(w, reference=dict(w)))
    assert same.score == 0.0 and not same.flagged
    assert same.findings[0].evidence["against"] == "reference"


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


def test_lsb_stats_flags_zeroed_low_bits_only() -> None:
    w = _gauss(8192).numpy()
    zeroed = (w.view("<u4") & np.uint32(0xFFFF0000)).view("<f4")
    ctx = ScanContext({"a": torch.from_numpy(w.copy()), "b": torch.from_numpy(zeroed.copy())})
    report = create_detector("lsb-stats").run(ctx)
    by_layer = {f.layer: f for f in report.findings}
    assert by_layer["b"].flagged and by_layer["b"].evidence["ones_in_worst_plane"] == 0.0
    assert not by_layer["a"].flagged and by_layer["a"].score < 0.05


class _Const(nn.Module):
    """Labels every input by its mean intensity (a smooth, honest-like rule)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = (x.flatten(1).mean(1) * 10).clamp(0, 9).long()
        return nn.functional.one_hot(level, 10).float()


def _info() -> ModelInfo:
    return ModelInfo(model_spec(create_model("mlp", input_shape=(1, 8, 8), num_classes=10)))


def test_noise_probe_against_reference_counts_disagreements() -> None:
    model, ref = _Const(), _Const()
    same = create_detector("noise-probe").run(
        ScanContext({}, info=_info(), model=model, reference_model=ref)
    )
    assert same.score == 0.0 and not same.flagged
    rng = np.random.default_rng(0)
    scrambled = FunctionOracle(lambda x: rng.integers(0, 10, x.shape[0]))
    report = create_detector("noise-probe").run(
        ScanContext({}, info=_info(), oracle=scrambled, reference_model=ref)
    )
    assert report.score == pytest.approx(0.9, abs=0.04) and report.flagged
    assert scrambled.queries == 1000


def test_noise_probe_without_reference_measures_label_stability() -> None:
    rng = np.random.default_rng(1)
    scrambled = FunctionOracle(lambda x: rng.integers(0, 10, x.shape[0]))
    report = create_detector("noise-probe").run(ScanContext({}, info=_info(), oracle=scrambled))
    assert report.findings[0].evidence["against"] == "stability"
    assert report.score == pytest.approx(0.9, abs=0.04) and scrambled.queries == 2000


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
