from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from covertml import metrics


def naive_ssim(a: np.ndarray, b: np.ndarray, win: int = 7, data_range: float = 255.0) -> float:
    """SSIM from Wang et al. (2004) with a uniform window and sample covariance."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    n = win * win
    cov_norm = n / (n - 1)
    ux, uy = uniform_filter(a, win), uniform_filter(b, win)
    vx = cov_norm * (uniform_filter(a * a, win) - ux * ux)
    vy = cov_norm * (uniform_filter(b * b, win) - uy * uy)
    vxy = cov_norm * (uniform_filter(a * b, win) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def test_ssim_matches_an_independent_implementation() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim(a, b) == pytest.approx(naive_ssim(a, b), abs=1e-9)
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a, 255 - a) < 0


def test_ssim_works_on_small_batches_of_8x8_images() -> None:
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (3, 8, 8)).astype(np.uint8)
    noisy = np.clip(imgs.astype(int) + 20, 0, 255).astype(np.uint8)
    expected = np.mean([naive_ssim(x, y, win=7) for x, y in zip(imgs, noisy, strict=True)])
    assert metrics.ssim(imgs, noisy) == pytest.approx(expected, abs=1e-9)


def test_psnr_and_mape_follow_their_formulas() -> None:
    a = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    b = np.array([[10, 100], [190, 255]], dtype=np.uint8)
    mse = (10**2 + 10**2) / 4
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse))
    assert metrics.psnr(a, a) == math.inf
    assert metrics.mape(a, b) == pytest.approx(5.0)


def test_bit_error_rate_counts_flipped_bits() -> None:
    a = np.array([0, 255, 0b1010_1010], dtype=np.uint8)
    b = np.array([1, 127, 0b0101_0101], dtype=np.uint8)
    assert metrics.bit_error_rate(a, b) == pytest.approx((1 + 1 + 8) / 24)
    bits = np.array([True, False, True, True])
    assert metrics.bit_error_rate(bits, ~bits) == 1.0
    with pytest.raises(ValueError, match="uint8"):
        metrics.bit_error_rate(a.astype(np.int32), b.astype(np.int32))


def test_cosine_and_accuracy() -> None:
    assert metrics.cosine_similarity(np.array([1.0, 1.0]), np.array([1.0, -1.0])) == 0.0
    assert metrics.cosine_similarity(np.array([3.0, 4.0]), np.array([6.0, 8.0])) == pytest.approx(1)
    assert metrics.accuracy(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])) == 0.75


def test_word_precision_recall_uses_multiset_matches() -> None:
    scores = metrics.word_precision_recall(
        [["the", "cat", "the"], ["dog"]], [["the", "the", "the", "hat"], []]
    )
    # doc 1: matches = min(2, 3) "the" = 2; decoded words 4, original 3; doc 2: 0 of 1
    assert scores.precision == pytest.approx(2 / 4)
    assert scores.recall == pytest.approx(2 / 4)
    assert scores.to_dict()["original_words"] == 4
