"""Parameter-distribution anomaly per layer (the paper's Figure 6).

Honest training leaves each weight tensor roughly bell-shaped around zero; correlated value
encoding makes a layer mirror the secret's pixel histogram, and sign encoding pushes
weights away from zero into two humps. Each weight tensor is standardized and compared,
by Kolmogorov-Smirnov distance, with the same layer of a trusted reference model when one
is given, otherwise with a Gaussian fit. Kurtosis, the mass near zero and the bimodality
coefficient are reported beside it as evidence. Capacity abuse changes no distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import stats

from covertml.audit.base import (
    Detector,
    DetectorReport,
    Finding,
    ScanContext,
    register_detector,
    report_from_findings,
    weight_tensors,
)

GAUSS_NEAR_ZERO = float(stats.norm.cdf(0.1) - stats.norm.cdf(-0.1))  # P(|z| < 0.1)


def standardized(values: np.ndarray, *, limit: int, rng: np.random.Generator) -> np.ndarray:
    """``values`` (at most ``limit`` of them, sampled) minus their mean, over their std."""
    flat = values.astype(np.float64).reshape(-1)
    if flat.size > limit:
        flat = rng.choice(flat, size=limit, replace=False)
    sd = flat.std()
    z: np.ndarray = (flat - flat.mean()) / (sd if sd > 0 else 1.0)
    return z


def shape_stats(z: np.ndarray) -> dict[str, float]:
    """Kurtosis, skew, mass near zero and bimodality coefficient of standardized values."""
    n = z.size
    skew = float(stats.skew(z))
    kurt = float(stats.kurtosis(z))  # excess
    correction = 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)) if n > 3 else 3.0
    return {
        "excess_kurtosis": kurt,
        "skew": skew,
        "near_zero": float(np.mean(np.abs(z) < 0.1)),
        "bimodality": (skew**2 + 1) / (kurt + correction),
    }


@register_detector
@dataclass(frozen=True, kw_only=True)
class DistributionDetector(Detector):
    """Per-layer weight-distribution anomaly: KS distance to a reference or to a Gaussian.

    Attributes:
        threshold: KS distance above which a layer is flagged.
        sample: Values sampled per tensor (the statistic needs no more).
    """

    name: ClassVar[str] = "distribution"
    kind: ClassVar[str] = "white-box"

    threshold: float = 0.12
    sample: int = 200_000

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Needs at least one weight tensor."""
        return None if weight_tensors(ctx.tensors, min_size=256) else "no weight tensors"

    def run(self, ctx: ScanContext) -> DetectorReport:
        """Scores every weight tensor with 256 or more values."""
        rng = np.random.default_rng([ctx.seed, 0xD157])
        findings = []
        for name, tensor in weight_tensors(ctx.tensors, min_size=256):
            z = standardized(tensor.float().numpy(), limit=self.sample, rng=rng)
            evidence: dict[str, float | str] = {"against": "gaussian"}
            evidence.update(shape_stats(z), values=tensor.numel())
            ref = (ctx.reference or {}).get(name)
            if ref is not None and tuple(ref.shape) == tuple(tensor.shape):
                z_ref = standardized(ref.float().numpy(), limit=self.sample, rng=rng)
                score = float(stats.ks_2samp(z, z_ref).statistic)
                evidence["against"] = "reference"
                evidence["reference_kurtosis"] = float(stats.kurtosis(z_ref))
                evidence["reference_near_zero"] = float(np.mean(np.abs(z_ref) < 0.1))
            else:
                score = float(stats.kstest(z, "norm").statistic)
                evidence["gaussian_near_zero"] = GAUSS_NEAR_ZERO
            findings.append(
                Finding(self.name, name, score, self.threshold, score > self.threshold, evidence)
            )
        note = (
            "KS distance of each standardized weight tensor to "
            + ("the reference model's" if ctx.reference else "a Gaussian fit")
            + "; flags correlated-value and sign encoding, not LSB or capacity abuse."
        )
        if not ctx.reference:
            note += " Without a reference, unusual but honest training can also be flagged."
        return report_from_findings(self.name, findings, threshold=self.threshold, note=note)
