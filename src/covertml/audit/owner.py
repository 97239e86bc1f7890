"""Data-owner audits: do the weights spell out the owner's own training data?

An owner who knows the training set can test what a distribution test cannot: whether a
weight tensor, cut into pieces the size of one item, correlates with items of that data
(correlated value encoding), or whether its signs, read 8 at a time, do (sign encoding).
The attacker's choice of items, their order, and where in the tensor they start are all
unknown, so every piece is matched against every owner item and a range of start offsets
is tried. The same test on a random permutation of the same weights gives the score an
honest baseline: the score is how much better the real weights match than shuffled ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from covertml.attacks.secrets import secret_from_dataset
from covertml.audit.base import (
    Detector,
    DetectorReport,
    Finding,
    ScanContext,
    register_detector,
    report_from_findings,
    weight_tensors,
)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return out


def owner_items(ctx: ScanContext, *, max_items: int, max_cells: int) -> np.ndarray | None:
    """The owner's image items as unit rows ``N x P`` (``None`` for text or no data)."""
    if ctx.dataset is None or ctx.dataset.modality != "image":
        return None
    secret = secret_from_dataset(ctx.dataset)
    images = secret.images().reshape(secret.count, -1).astype(np.float32)
    limit = max(16, min(max_items, max_cells // images.shape[1]))
    if images.shape[0] > limit:
        rng = np.random.default_rng([ctx.seed, 0x0A11])
        images = images[np.sort(rng.choice(images.shape[0], limit, replace=False))]
    rows = _unit_rows(images)
    kept: np.ndarray = rows[np.linalg.norm(rows, axis=1) > 0]
    return kept


def match_score(
    stream: np.ndarray,
    items: np.ndarray,
    *,
    max_phases: int,
    max_segments: int,
    rng: np.random.Generator,
) -> tuple[float, int]:
    """Best (over start offsets) median over pieces of the best |correlation| with an item.

    Returns the score and the offset that gave it.
    """
    p = items.shape[1]
    phases = np.unique(np.linspace(0, p - 1, min(p, max_phases)).round().astype(int))
    best, where = -1.0, 0
    for phase in phases:
        n_seg = (stream.size - phase) // p
        if n_seg < 2:
            continue
        segs = stream[phase : phase + n_seg * p].reshape(n_seg, p)
        if n_seg > max_segments:
            segs = segs[np.sort(rng.choice(n_seg, max_segments, replace=False))]
        corr = np.abs(_unit_rows(segs.astype(np.float32)) @ items.T)
        value = float(np.median(corr.max(axis=1)))
        if value > best:
            best, where = value, int(phase)
    return best, where


def sign_bytes(stream: np.ndarray, offset: int) -> np.ndarray:
    """Bytes spelled by the signs of ``stream[offset:]`` (positive = 1, MSB first)."""
    bits = (stream[offset:] > 0).astype(np.uint8)
    bits = bits[: bits.size - bits.size % 8]
    return np.packbits(bits).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class _OwnerAudit(Detector):
    """Shared options and loop of the two owner audits."""

    kind: ClassVar[str] = "owner-audit"
    by_signs: ClassVar[bool] = False

    threshold: float = 0.25
    max_items: int = 2000
    max_cells: int = 2_000_000
    max_phases: int = 16
    max_segments: int = 128

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Needs the owner's image data."""
        if ctx.dataset is None:
            return "needs the owner's training data (--dataset)"
        if ctx.dataset.modality != "image":
            return "owner audits are implemented for image data only"
        return None

    def _score(self, stream: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> float:
        streams = [sign_bytes(stream, b) for b in range(8)] if self.by_signs else [stream]
        return max(
            match_score(
                s, items, max_phases=self.max_phases, max_segments=self.max_segments, rng=rng
            )[0]
            for s in streams
        )

    def run(self, ctx: ScanContext) -> DetectorReport:
        """Scores every weight tensor holding at least two owner-item-sized pieces."""
        items = owner_items(ctx, max_items=self.max_items, max_cells=self.max_cells)
        assert items is not None
        p = items.shape[1] * (8 if self.by_signs else 1)
        rng = np.random.default_rng([ctx.seed, 0x0A12])
        findings = []
        for name, tensor in weight_tensors(ctx.tensors, min_size=2 * p):
            stream = tensor.float().numpy().reshape(-1)
            observed = self._score(stream, items, rng)
            shuffled = self._score(rng.permutation(stream), items, rng)
            score = observed - shuffled
            evidence = {"match": observed, "shuffled_match": shuffled, "items": items.shape[0]}
            findings.append(
                Finding(self.name, name, score, self.threshold, score > self.threshold, evidence)
            )
        what = "signs (8 per pixel)" if self.by_signs else "values"
        note = (
            f"median best |correlation| of item-sized pieces of each tensor's {what} with the "
            "owner's images, minus the same for the shuffled tensor"
        )
        return report_from_findings(self.name, findings, threshold=self.threshold, note=note)


@register_detector
@dataclass(frozen=True, kw_only=True)
class OwnerCorrelation(_OwnerAudit):
    """Owner audit: weight values correlated with the owner's images (correlated value)."""

    name: ClassVar[str] = "owner-correlation"


@register_detector
@dataclass(frozen=True, kw_only=True)
class OwnerSign(_OwnerAudit):
    """Owner audit: weight signs spelling the owner's pixel bytes (sign encoding)."""

    name: ClassVar[str] = "owner-sign"
    by_signs: ClassVar[bool] = True
