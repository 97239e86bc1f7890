"""Parameter-distribution anomaly per layer (the paper's Figure 6), as a test of unimodality.

Honest training leaves each weight tensor unimodal around zero: a Gaussian-like or
heavy-tailed bell, or -- straight from initialization -- a uniform. Sign encoding pushes
weights away from zero to two humps at plus or minus a margin, and correlated value
encoding makes a layer mirror the secret's pixel histogram, which is multimodal (digits
and faces have a dark background hump and a bright stroke hump).

Null, without a reference: the layer's values are draws from *some unimodal law*.
Hartigan's dip statistic (the distance from the empirical CDF to the nearest unimodal CDF)
is compared with its distribution under the uniform law, the least favourable unimodal law:
the uniform's p-values are uniform and every other unimodal law's are larger, so the test
is conservative for every unimodal honest histogram and exact for a random-init (Kaiming
uniform) layer, which is therefore flagged at rate ``alpha`` and no more.

Honest training is not always exactly unimodal, though: a linear text model whose rare
words never move from their uniform initialization while the frequent ones do is a mild
mixture (dip 0.007 on 20 Newsgroups logistic regression), which the test finds at 50,000
values (p at the table's floor) although nothing is encoded. The test therefore runs on
``sample`` values (default 2,000): enough to find the gross multimodality encodings make
(a two-point sign layer has dip 0.25, a layer mirroring digits pixels 0.027), too few to flag
a mild honest mixture. The p-values come
from the ``diptest`` package's table, whose smallest tail probability is
:data:`DIP_P_FLOOR`; no layer gets a smaller p-value.

Null, with a reference (a trusted state dict holding the same-named, same-shaped tensor):
additionally, the layer and the reference's layer, each standardized (so that only the
shape counts, not the scale training left), are draws from the same law: a two-sample
Kolmogorov-Smirnov test on ``reference_sample`` values of each. Its power grows with
``reference_sample`` and so does its sensitivity to honest recipe differences between the
model and the reference (initialization, weight decay, training length). The two p-values
of a layer are combined by Bonferroni (``tests=2``).

Kurtosis, skew, the mass near zero, the bimodality coefficient and the KS distance to a
Gaussian fit are reported as evidence only: honest layers differ in all of them. Capacity
abuse and LSB encoding change no distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import diptest  # type: ignore[import-untyped]
import numpy as np
import torch

from covertml.audit.base import (
    DEFAULT_ALPHA,
    Detector,
    DetectorReport,
    Finding,
    ScanContext,
    register_detector,
    report_from_findings,
    weight_names,
    weight_tensors,
)
from covertml.errors import ConfigError

DIP_P_FLOOR = 1e-5  # 1 - 0.99999: the last tabulated quantile of the dip under the uniform
DIP_MAX_N = 72_000  # the table's largest sample size
MIN_SIZE = 256


def sample_values(
    values: np.ndarray | torch.Tensor, *, limit: int, rng: np.random.Generator
) -> np.ndarray:
    """``values`` as float64, flat; a random ``limit`` of them when there are more.

    Any float dtype (bfloat16 included); only the sampled values are converted.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> sample_values(np.arange(10.0), limit=4, rng=rng).size
        4
        >>> sample_values(np.ones(3, np.float32), limit=4, rng=rng).tolist()
        [1.0, 1.0, 1.0]
    """
    flat = values.reshape(-1)
    if flat.shape[0] > limit:
        picks = rng.choice(flat.shape[0], size=limit, replace=False)
        flat = flat[torch.from_numpy(picks)] if isinstance(flat, torch.Tensor) else flat[picks]
    if isinstance(flat, torch.Tensor):
        return flat.detach().to(torch.float64).numpy()
    return np.asarray(flat, dtype=np.float64)


def standardize(x: np.ndarray) -> np.ndarray:
    """``x`` minus its mean, over its standard deviation (unchanged spread when constant).

    Example:
        >>> standardize(np.array([1.0, 3.0])).tolist()
        [-1.0, 1.0]
    """
    sd = x.std()
    z: np.ndarray = (x - x.mean()) / (sd if sd > 0 else 1.0)
    return z


def shape_stats(z: np.ndarray) -> dict[str, float]:
    """Evidence: kurtosis, skew, mass near zero, bimodality coefficient, KS to a Gaussian.

    Example:
        >>> s = shape_stats(standardize(np.random.default_rng(0).standard_normal(5000)))
        >>> abs(s["excess_kurtosis"]) < 0.2, s["ks_gaussian"] < 0.03
        (True, True)
    """
    from scipy import stats  # slow to import: only when a scan runs

    n = z.size
    skew = float(stats.skew(z))
    kurt = float(stats.kurtosis(z))  # excess
    correction = 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)) if n > 3 else 3.0
    return {
        "excess_kurtosis": kurt,
        "skew": skew,
        "near_zero": float(np.mean(np.abs(z) < 0.1)),
        "gaussian_near_zero": float(stats.norm.cdf(0.1) - stats.norm.cdf(-0.1)),
        "bimodality": (skew**2 + 1) / (kurt + correction),
        "ks_gaussian": float(stats.kstest(z, "norm").statistic),
    }


def dip_test(x: np.ndarray) -> tuple[float, float]:
    """Hartigan's dip and its p-value against the uniform, floored at :data:`DIP_P_FLOOR`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> dip, p = dip_test(np.concatenate([rng.normal(-3, 1, 500), rng.normal(3, 1, 500)]))
        >>> p == DIP_P_FLOOR, dip_test(rng.standard_normal(1000))[1] > 0.1
        (True, True)
    """
    dip, p = diptest.diptest(np.asarray(x, dtype=np.float64))
    return float(dip), max(float(p), DIP_P_FLOOR)


def zero_hole_test(x: np.ndarray, *, widths: tuple[float, ...]) -> tuple[float, float]:
    """Are there fewer weights within ``a`` of zero than between ``a`` and ``2a``?

    A sign-encoding margin pushes weights away from zero. Null: the density of ``|w|`` does
    not increase on ``[0, 2a]`` -- true of every law with its mode at zero (Gaussian,
    Laplace, Student) and, at the boundary, of the uniform (a random init). Under it the
    count in ``[0, a)`` is at least a fair coin's share of the ``[0, 2a)`` count
    (one-sided exact binomial, Bonferroni over ``widths``, in standard deviations).
    Returns the smallest ratio of the two counts and the p-value.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> gauss = rng.normal(size=20_000)
        >>> zero_hole_test(gauss, widths=(0.1,))[1] > 0.01
        True
        >>> holed = np.sign(gauss) * (np.abs(gauss) + 0.3)
        >>> zero_hole_test(holed, widths=(0.2,))[1] < 1e-20
        True
    """
    from scipy import stats

    z = np.abs(x) / (x.std() or 1.0)
    best_ratio, best_p = 1.0, 1.0
    for a in widths:
        inner = int((z < a).sum())
        outer = int(((z >= a) & (z < 2 * a)).sum())
        if inner + outer == 0:
            continue
        p = float(stats.binom.cdf(inner, inner + outer, 0.5))
        if p < best_p:
            best_ratio, best_p = inner / max(outer, 1), p
    return best_ratio, min(1.0, len(widths) * best_p)


@register_detector
@dataclass(frozen=True, kw_only=True)
class DistributionDetector(Detector):
    """Per-layer test of unimodality (dip test), and of equality with a reference layer.

    Attributes:
        sample: Values sampled per tensor for the dip test (at most 72,000, the size the
            dip test's p-value table reaches).
        reference_sample: Values of each side in the two-sample KS test against the
            reference; more is more power, and more sensitivity to honest recipe
            differences between the model and the reference.
        hole_sample: Values used by the near-zero test.
        hole_widths: Half-widths ``a`` (in standard deviations) of the near-zero test.
    """

    name: ClassVar[str] = "distribution"
    kind: ClassVar[str] = "white-box"

    sample: int = 2000
    reference_sample: int = 2000
    hole_sample: int = 200_000
    hole_widths: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)

    def __post_init__(self) -> None:
        if not 4 <= self.sample <= DIP_MAX_N:
            raise ConfigError(
                f"distribution: sample={self.sample} is out of range",
                fix=f"use 4 to {DIP_MAX_N:,} (the dip test's p-value table stops there)",
            )
        if self.reference_sample < 2:
            raise ConfigError("distribution: reference_sample must be 2 or more")

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Needs at least one weight tensor of 256 values or more."""
        return None if weight_names(ctx.tensors, min_size=MIN_SIZE) else "no weight tensors"

    def run(self, ctx: ScanContext, *, alpha: float = DEFAULT_ALPHA) -> DetectorReport:
        """Tests every weight tensor with 256 or more values."""
        rng = np.random.default_rng([ctx.seed, 0xD157])
        findings = []
        for name, tensor in weight_tensors(ctx.tensors, min_size=MIN_SIZE):
            x = sample_values(tensor, limit=self.sample, rng=rng)
            dip, p_dip = dip_test(x)
            ratio, p_hole = self._hole(tensor, rng)
            evidence: dict[str, Any] = {"values": tensor.numel(), "sampled": x.size}
            evidence.update(shape_stats(standardize(x)), dip=dip, dip_p=p_dip)
            evidence.update(near_zero_ratio=ratio, near_zero_p=p_hole)
            score = dip if p_dip <= p_hole else 1.0 - ratio
            p, tests = min(1.0, 2 * min(p_dip, p_hole)), 2
            null = "unimodal (dip test, uniform calibration); no fewer weights near 0 (binomial)"
            ref = ctx.reference[name] if ctx.reference and name in ctx.reference else None
            if ref is not None and tuple(ref.shape) == tuple(tensor.shape):
                ks, p_ks = self._ks(x, ref, rng)
                evidence.update(ks_reference=ks, ks_reference_p=p_ks)
                if p_ks < p / 2:
                    score = ks
                p, tests = min(1.0, 3 * min(p_dip, p_hole, p_ks)), 3
                null += "; same standardized law as the reference's layer (KS)"
            findings.append(Finding(self.name, name, score, p, null, tests, evidence=evidence))
        note = (
            "dip test of unimodality per weight tensor"
            + (", and KS against the reference's standardized layer" if ctx.reference else "")
            + "; honest layers are unimodal (a random-init uniform layer is the boundary "
            f"case, flagged at rate alpha); p-values are floored at {DIP_P_FLOOR:g} by the "
            "dip table; flags sign and correlated-value encoding, not LSB or capacity abuse"
        )
        return report_from_findings(self.name, findings, alpha=alpha, note=note)

    def _hole(self, values: torch.Tensor, rng: np.random.Generator) -> tuple[float, float]:
        """Test of a deficit of weights near zero (what a sign margin leaves)."""
        x = sample_values(values, limit=self.hole_sample, rng=rng)
        return zero_hole_test(x, widths=self.hole_widths)

    def _ks(
        self, x: np.ndarray, ref: torch.Tensor, rng: np.random.Generator
    ) -> tuple[float, float]:
        """Two-sample KS of ``reference_sample`` standardized values of each side."""
        ref_all = sample_values(ref, limit=self.sample, rng=rng)
        a = sample_values(x, limit=self.reference_sample, rng=rng)
        b = sample_values(ref_all, limit=self.reference_sample, rng=rng)
        # standardized with the moments of the (much larger) samples, so that the
        # estimation error is small beside the KS statistic's own spread
        za = (a - x.mean()) / (x.std() or 1.0)
        zb = (b - ref_all.mean()) / (ref_all.std() or 1.0)
        from scipy import stats

        result = stats.ks_2samp(za, zb)
        return float(result.statistic), float(result.pvalue)
