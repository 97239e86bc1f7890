"""Low-bit statistics: do the low bits of the weights run in patterns along the file?

Null: along the storage order of a float32 tensor, the low mantissa bits of honest weights
are *exchangeable* -- each bit plane's sequence is as likely as any rearrangement of it.
That holds whatever the planes' balance: honest low planes can be far from half ones (a
model once stored at reduced precision has zero low bits, a ``torch.rand``-based init with
a power-of-two bound leaves bit 0 at zero, pruned weights are zero), so imbalance is
reported as evidence only. The
statistic is, per low bit plane, the number of adjacent values whose bits agree; under
random rearrangement of the plane its distribution given the number of ones is the
Wald-Wolfowitz runs distribution, computed exactly here (two-sided), and the planes of a
tensor are Bonferroni-corrected together (``tests=planes``). Exact zeros (pruned weights)
are dropped before counting.

A plain payload written sequentially into the low bits -- raw pixel bytes, text -- has
strong serial structure and is found. An encrypted or compressed payload (what ``lsb``
writes) does not: its low bits are as exchangeable as honest ones, so no finding here is
*not* a clean bill; sanitize with ``lsb-randomize``. The null also fails, honestly flagging,
for a tensor whose low-bit law changes along the stream, such as a contiguous block of
weights left untouched at a ``torch.rand``-based init beside trained ones.

Tensors larger than ``sample`` are read as contiguous runs (serial structure needs
neighbours), the first run always included, since payloads are written from the start;
from a lazy checkpoint only those runs are read from disk. float16 and bfloat16 tensors are
tested on their own words (``uint16``), on at most their mantissa's 10 or 7 low planes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import special, stats

from covertml.audit.base import (
    DEFAULT_ALPHA,
    Detector,
    DetectorReport,
    Finding,
    ScanContext,
    register_detector,
    report_from_findings,
)
from covertml.errors import ConfigError
from covertml.floats import FloatFormat, float_format, require_format, to_words
from covertml.models.checkpoint import TensorInfo, describe, read_range

MIN_SIZE = 4096


def bit_planes(words: np.ndarray, planes: int) -> np.ndarray:
    """The low ``planes`` bit planes of unsigned words, as a ``planes x n`` 0/1 array.

    Example:
        >>> bit_planes(np.array([1, 3], np.uint32), 3).tolist()
        [[1, 1], [0, 1], [0, 0]]
    """
    kind = words.dtype.type
    shifts = np.arange(planes, dtype=words.dtype)[:, None]
    out: np.ndarray = ((words[None, :] >> shifts) & kind(1)).astype(np.uint8)
    return out


def adjacent_agreements(bits: np.ndarray) -> np.ndarray:
    """Per row of a 0/1 array, how many neighbours along the row are equal.

    Example:
        >>> adjacent_agreements(np.array([[0, 0, 1, 1], [0, 1, 0, 1]])).tolist()
        [2, 0]
    """
    return np.asarray((bits[:, 1:] == bits[:, :-1]).sum(axis=1), dtype=np.int64)


def agreement_moments(n: int, ones: int) -> tuple[float, float]:
    """Mean and variance of the adjacent agreements of a random arrangement of ``ones`` ones.

    With ``k = ones`` and ``m = n - ones``, the runs count ``R = n - agreements`` has
    ``E[R] = 1 + 2km/n`` and ``Var[R] = 2km(2km - n) / (n^2 (n - 1))`` (Wald-Wolfowitz).

    Example:
        >>> agreement_moments(4, 2)  # 6 arrangements: 2, 0, 1, 1, 0, 2 agreements
        (1.0, 0.6666666666666666)
    """
    km = ones * (n - ones)
    mean = n - 1 - 2 * km / n
    var = 2 * km * (2 * km - n) / (n * n * (n - 1)) if n > 1 else 0.0
    return float(mean), float(var)


def _log_runs_pmf(n: int, ones: int) -> tuple[np.ndarray, np.ndarray]:
    """Every possible runs count of a random arrangement, and its log probability."""
    k, m = ones, n - ones
    j = np.arange(1, min(k, m) + 2, dtype=np.float64)  # runs of ones / zeros

    def lc(a: float | np.ndarray, b: np.ndarray) -> np.ndarray:  # log C(a, b), -inf if 0
        a = np.broadcast_to(np.asarray(a, dtype=np.float64), b.shape)
        ok = (b >= 0) & (b <= a)
        out = np.full(b.shape, -np.inf)
        out[ok] = special.gammaln(a[ok] + 1) - special.gammaln(b[ok] + 1)
        out[ok] -= special.gammaln(a[ok] - b[ok] + 1)
        return out

    total = lc(float(n), np.array([float(k)]))[0]
    even = np.log(2.0) + lc(k - 1, j - 1) + lc(m - 1, j - 1) - total  # R = 2j
    odd = np.logaddexp(lc(k - 1, j - 1) + lc(m - 1, j), lc(k - 1, j) + lc(m - 1, j - 1))
    runs = np.concatenate([2 * j, 2 * j + 1])
    logp = np.concatenate([even, odd - total])
    keep = np.isfinite(logp)
    return runs[keep], logp[keep]


EXACT_LIMIT = 20_000  # above this many ones and zeros, the normal approximation


def runs_p_value(n: int, ones: int, agreements: int) -> float:
    """Two-sided p-value of ``agreements`` under random arrangement of the bits.

    Exact (the Wald-Wolfowitz runs distribution) up to :data:`EXACT_LIMIT` ones and zeros;
    beyond, the normal law with the exact mean and variance, whose error shrinks as
    ``1 / sqrt(n)``.

    A constant plane (no ones, or all ones) carries no serial information: ``1.0``.

    Example:
        >>> round(70 * runs_p_value(8, 4, 6), 9)  # 00001111: 2 runs, as 2 of 70 arrangements
        4.0
        >>> runs_p_value(1000, 0, 999)
        1.0
    """
    if ones in (0, n):
        return 1.0
    if min(ones, n - ones) > EXACT_LIMIT:  # the runs count is normal to within 1/sqrt(n)
        mean, var = agreement_moments(n, ones)
        z = abs(agreements - mean) / np.sqrt(var) if var > 0 else 0.0
        return float(min(1.0, 2 * np.exp(stats.norm.logsf(z))))
    runs, logp = _log_runs_pmf(n, ones)
    r = n - agreements
    low = special.logsumexp(logp[runs <= r])
    high = special.logsumexp(logp[runs >= r])
    return float(min(1.0, 2 * np.exp(min(low, high))))


def run_starts(n: int, *, limit: int, run: int, rng: np.random.Generator) -> np.ndarray | None:
    """Starts of the ``limit // run`` runs of ``run`` values read from ``n`` (``None``: all).

    The first run always starts at 0; the others are distinct, in order.

    Example:
        >>> run_starts(100, limit=30, run=10, rng=np.random.default_rng(0)).tolist()[0]
        0
        >>> run_starts(20, limit=30, run=10, rng=np.random.default_rng(0)) is None
        True
    """
    if n <= limit:
        return None
    windows = n // run
    picks = 1 + rng.choice(windows - 1, size=min(windows, limit // run) - 1, replace=False)
    return np.sort(np.concatenate([[0], picks])) * run


def contiguous_sample(
    words: np.ndarray, *, limit: int, run: int, rng: np.random.Generator
) -> np.ndarray:
    """``words`` when ``limit`` or fewer; else ``limit // run`` runs of ``run`` in order.

    The first run is always one of them.

    Example:
        >>> s = contiguous_sample(np.arange(100), limit=30, run=10, rng=np.random.default_rng(0))
        >>> s.size, s[:10].tolist() == list(range(10)), bool((np.diff(s) > 0).all())
        (30, True, True)
    """
    starts = run_starts(words.size, limit=limit, run=run, rng=rng)
    if starts is None:
        return words
    return words[(starts[:, None] + np.arange(run)).reshape(-1)]


@register_detector
@dataclass(frozen=True, kw_only=True)
class LSBStats(Detector):
    """Serial structure of the low bit planes (finds plain, unencrypted LSB payloads).

    Attributes:
        planes: Low bit planes tested (Bonferroni over them), at most each format's mantissa.
        sample: Values read per tensor at most.
        run_length: Length of the contiguous runs read when a tensor has more than
            ``sample`` values.
    """

    name: ClassVar[str] = "lsb-stats"
    kind: ClassVar[str] = "white-box"

    planes: int = 16
    sample: int = 1_000_000
    run_length: int = 4096

    def __post_init__(self) -> None:
        if not 1 <= self.planes <= 32:
            raise ConfigError(f"lsb-stats: planes={self.planes} is out of range", fix="use 1-32")
        if not 2 <= self.run_length <= self.sample:
            raise ConfigError("lsb-stats: need 2 <= run_length <= sample")

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Needs float32, float16 or bfloat16 tensors of 4,096 values or more."""
        ok = any(_eligible(i) for i in describe(ctx.tensors).values())
        return None if ok else "no float32/float16/bfloat16 tensor of 4,096 values or more"

    def _test(
        self, name: str, words: np.ndarray, fmt: FloatFormat, rng: np.random.Generator
    ) -> Finding | None:
        """The finding on one tensor's little-endian words (``None``: too few)."""
        sign = words.dtype.type(1 << (8 * words.itemsize - 1))
        nonzero = words[(words & ~sign) != 0]
        if nonzero.size < MIN_SIZE:
            return None
        w = contiguous_sample(nonzero, limit=self.sample, run=self.run_length, rng=rng)
        planes = min(self.planes, fmt.mantissa)
        bits = bit_planes(w, planes)
        ones = bits.sum(axis=1, dtype=np.int64)
        agree = adjacent_agreements(bits)
        n = int(w.size)
        p_planes = [runs_p_value(n, int(k), int(a)) for k, a in zip(ones, agree, strict=True)]
        z = []
        for k, a in zip(ones, agree, strict=True):
            mean, var = agreement_moments(n, int(k))
            z.append((a - mean) / np.sqrt(var) if var > 0 else 0.0)
        worst = int(np.argmin(p_planes))
        low_byte = np.bincount((w & w.dtype.type(0xFF)).astype(np.int64), minlength=256)
        evidence: dict[str, Any] = {
            "worst_plane": worst,
            "agreement_z": [round(float(v), 3) for v in z],
            "ones_share": [round(float(v), 4) for v in ones / n],
            "low_byte_chi2_p": float(stats.chisquare(low_byte).pvalue),
            "zeros_dropped": int(words.size - nonzero.size),
            "values": n,
            "dtype": fmt.name,
        }
        p = min(1.0, planes * p_planes[worst])
        null = (
            "low bits exchangeable along the stream "
            "(runs test per plane; exact, normal for large planes)"
        )
        return Finding(self.name, name, abs(z[worst]), p, null, planes, evidence=evidence)

    def run(self, ctx: ScanContext, *, alpha: float = DEFAULT_ALPHA) -> DetectorReport:
        """Tests every float tensor of 4,096 values or more (float32, float16, bfloat16)."""
        rng = np.random.default_rng([ctx.seed, 0x15B5])
        findings = []
        for name, info in describe(ctx.tensors).items():
            if not _eligible(info):
                continue
            fmt = require_format(info.dtype)
            found = self._test(name, self._words(ctx, name, info.numel, rng), fmt, rng)
            if found is not None:
                findings.append(found)
        note = (
            "serial structure of the low bit planes along the file: finds plain payloads "
            "written in order (raw pixels, text); an encrypted or compressed payload looks "
            "like honest low bits, so no finding is not a clean bill: sanitize with "
            "lsb-randomize; imbalanced low bits (reduced precision, pruning, init) are "
            "evidence only"
        )
        return report_from_findings(self.name, findings, alpha=alpha, note=note)

    def _words(self, ctx: ScanContext, name: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """The tensor's words in file order; of large tensors, only ``sample`` of them.

        The runs are over-read by a quarter, since exact zeros are dropped afterwards.
        """
        run = self.run_length
        starts = run_starts(n, limit=self.sample + self.sample // 4, run=run, rng=rng)
        if starts is None:
            return to_words(ctx.tensors[name])
        return np.concatenate(
            [to_words(read_range(ctx.tensors, name, int(s), run)) for s in starts]
        )


def _eligible(info: TensorInfo) -> bool:
    return float_format(info.dtype) is not None and info.skip is None and info.numel >= MIN_SIZE
