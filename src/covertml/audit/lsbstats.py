"""Low-bit statistics: are the low mantissa bits as random as trained floats' are?

The low mantissa bits of float32 weights that came out of training are indistinguishable
from coin flips -- and so is an encrypted or compressed LSB payload. This detector can
therefore only catch payloads that leave structure (plain, uncompressed data; a run of
constant bits), and it also fires on honest models stored at reduced precision, whose low
bits are zero. A clean result is not evidence of absence: ``lsb-randomize`` is the defence.
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
)


def bit_balance(words: np.ndarray, planes: int) -> np.ndarray:
    """Fraction of ones in each of the low ``planes`` bit planes of ``uint32`` words.

    Example:
        >>> bit_balance(np.array([1, 3], np.uint32), 3).tolist()
        [1.0, 0.5, 0.0]
    """
    shifts = np.arange(planes, dtype=np.uint32)
    return np.array([((words >> s) & 1).mean() for s in shifts])


@register_detector
@dataclass(frozen=True, kw_only=True)
class LSBStats(Detector):
    """Low-bit statistics: imbalance of the low bit planes (structured LSB payloads only).

    Attributes:
        planes: Low bit planes examined.
        threshold: Largest |fraction of ones - 0.5| x 2 tolerated in a plane.
        sample: Values sampled per tensor.
    """

    name: ClassVar[str] = "lsb-stats"
    kind: ClassVar[str] = "white-box"

    planes: int = 16
    threshold: float = 0.1
    sample: int = 1_000_000

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Needs float32 tensors of 4,096 values or more."""
        ok = any(v.dtype.is_floating_point and v.numel() >= 4096 for v in ctx.tensors.values())
        return None if ok else "no float32 tensor large enough for bit statistics"

    def run(self, ctx: ScanContext) -> DetectorReport:
        """Scores every float32 tensor of 4,096 values or more."""
        rng = np.random.default_rng([ctx.seed, 0x15B5])
        findings = []
        for name, tensor in ctx.tensors.items():
            if str(tensor.dtype) != "torch.float32" or tensor.numel() < 4096:
                continue
            words = tensor.numpy().astype("<f4").view("<u4").reshape(-1)
            if words.size > self.sample:
                words = rng.choice(words, size=self.sample, replace=False)
            balance = bit_balance(words, self.planes)
            score = float(np.abs(balance - 0.5).max() * 2)
            low_byte = np.bincount((words & 0xFF).astype(np.int64), minlength=256)
            chi = stats.chisquare(low_byte)
            evidence = {
                "worst_plane": int(np.abs(balance - 0.5).argmax()),
                "ones_in_worst_plane": float(balance[np.abs(balance - 0.5).argmax()]),
                "low_byte_chi2_p": float(chi.pvalue),
                "zero_low_bytes": float(low_byte[0] / words.size),
                "values": int(words.size),
            }
            findings.append(
                Finding(self.name, name, score, self.threshold, score > self.threshold, evidence)
            )
        note = (
            "low bits that look random are what honest float32 training leaves and what an "
            "encrypted payload looks like, so no finding here is not a clean bill: "
            "sanitize with lsb-randomize; a finding means structured low bits (a plain "
            "payload, or a model once stored at reduced precision)"
        )
        return report_from_findings(self.name, findings, threshold=self.threshold, note=note)
