"""Detectors: look inside a released model (or ask it questions) for traces of the attacks.

Each detector reads a :class:`ScanContext` -- the model's tensors, and whichever of a
reference model, the owner's data and a label oracle the caller has -- and returns a
:class:`DetectorReport`. Every verdict is a statistical test: each :class:`Finding` carries
its statistic, the null the detector built itself to judge it (shuffled weights, the owner's
held-out items, a reference model), and a p-value under that null that already accounts for
the hypotheses the detector tried inside that finding (offsets, layouts, bit orders). The
findings are then corrected together (Holm) so that a model is flagged at a stated
family-wise false-positive rate ``alpha``. Detectors register by name, like attacks and
sanitizers.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from covertml.attacks.oracle import LabelOracle
from covertml.data.base import Dataset
from covertml.models.checkpoint import describe
from covertml.models.files import ModelInfo
from covertml.registry import Registry

DEFAULT_ALPHA = 1e-3


@dataclass(frozen=True)
class Finding:
    """One test of one detector on one layer (``layer`` is ``None`` for whole-model tests).

    Attributes:
        detector: Detector name.
        layer: Tensor name (or a window of the carrier stream), or ``None``.
        score: The test statistic (higher = more suspicious).
        p_value: Probability of a statistic at least this extreme under ``null``, already
            corrected for the ``tests`` hypotheses tried inside this finding.
        null: What the statistic was compared with.
        tests: Hypotheses that ``p_value`` accounts for.
        p_adjusted: ``p_value`` after the family-wise (Holm) correction over every finding
            of the report or scan (``None`` until corrected).
        flagged: ``p_adjusted <= alpha``.
        evidence: The statistics behind the test (what matched, where, how well).
    """

    detector: str
    layer: str | None
    score: float
    p_value: float
    null: str = ""
    tests: int = 1
    p_adjusted: float | None = None
    flagged: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DetectorReport:
    """A detector's verdict on a model.

    Attributes:
        detector: Detector name.
        score: Statistic of the most significant finding.
        p_value: Smallest family-wise adjusted p-value of the findings (1.0 when none).
        alpha: Family-wise false-positive rate the findings were flagged at.
        flagged: Whether any finding is flagged.
        findings: Findings, most significant first.
        note: What the test means and what it cannot show.
    """

    detector: str
    score: float
    p_value: float
    alpha: float
    flagged: bool
    findings: tuple[Finding, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = dataclasses.asdict(self)
        d["findings"] = [f.to_dict() for f in self.findings]
        return d


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence).

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.clip(np.asarray(p_values, dtype=np.float64), 0.0, 1.0)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def correct(reports: Sequence[DetectorReport], *, alpha: float) -> tuple[DetectorReport, ...]:
    """``reports`` with every finding Holm-corrected together and flagged at ``alpha``.

    Example:
        >>> f = [Finding("d", "a", 1.0, 1e-6), Finding("d", "b", 0.1, 0.2)]
        >>> (r,) = correct([DetectorReport("d", 0, 1, 0, False, tuple(f))], alpha=1e-3)
        >>> r.flagged, [g.flagged for g in r.findings], r.findings[1].p_adjusted
        (True, [True, False], 0.2)
    """
    flat = [f for r in reports for f in r.findings]
    adjusted = iter(holm([f.p_value for f in flat]).tolist())
    out = []
    for r in reports:
        done = [
            dataclasses.replace(f, p_adjusted=(a := next(adjusted)), flagged=a <= alpha)
            for f in r.findings
        ]
        done.sort(key=lambda f: (f.p_value, -f.score))
        best = done[0] if done else None
        best_p = best.p_adjusted if best is not None else None
        out.append(
            dataclasses.replace(
                r,
                score=best.score if best else 0.0,
                p_value=1.0 if best_p is None else float(best_p),
                alpha=alpha,
                flagged=any(f.flagged for f in done),
                findings=tuple(done),
            )
        )
    return tuple(out)


@dataclass(frozen=True, eq=False)
class ScanContext:
    """What a scan has to work with.

    Attributes:
        tensors: The model's state dict, or a lazy
            :class:`~covertml.models.checkpoint.Checkpoint` read one tensor at a time.
        info: Architecture and metadata, when the file carries them.
        model: The rebuilt model, when it could be rebuilt (local probing).
        reference: A trusted model's state dict of the same architecture.
        reference_model: A trusted model for the same task (any architecture), rebuilt.
        dataset: The owner's data (owner audits; text probes).
        oracle: A label oracle (the prediction API) for black-box probes.
        seed: Seed of every random choice the detectors make.
        device: Where detectors that run the model (the noise probe) run it.
    """

    tensors: Mapping[str, torch.Tensor]
    info: ModelInfo | None = None
    model: nn.Module | None = None
    reference: Mapping[str, torch.Tensor] | None = None
    reference_model: nn.Module | None = None
    dataset: Dataset | None = None
    oracle: LabelOracle | None = None
    seed: int = 0
    device: str = "cpu"


def report_from_findings(
    name: str, findings: list[Finding], *, alpha: float, note: str
) -> DetectorReport:
    """A report of ``findings``, Holm-corrected among themselves and flagged at ``alpha``."""
    empty = DetectorReport(name, 0.0, 1.0, alpha, False, tuple(findings), note)
    (report,) = correct([empty], alpha=alpha)
    return report


class Detector(ABC):
    """Base class of the detectors (subclasses are frozen dataclasses)."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "white-box", "owner-audit" or "black-box"
    #: Whether a scan runs it when no detectors are named (only detectors whose p-values
    #: hold the family-wise false-positive rate on honest models are).
    in_default: ClassVar[bool] = True

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Why this detector cannot run on ``ctx`` (``None`` when it can)."""
        return None

    @abstractmethod
    def run(self, ctx: ScanContext, *, alpha: float = DEFAULT_ALPHA) -> DetectorReport:
        """Tests the model in ``ctx``; findings are flagged at family-wise rate ``alpha``."""

    def options(self) -> dict[str, Any]:
        """The detector's options, for records."""
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


DETECTORS: Registry[Detector] = Registry("detector")


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Class decorator registering a detector under ``cls.name``."""
    return DETECTORS.register_class(cls, kind=cls.kind, default=cls.in_default)


def list_detectors() -> list[str]:
    """Registered detector names.

    Example:
        >>> {"distribution", "owner-correlation", "noise-probe"} <= set(list_detectors())
        True
    """
    return DETECTORS.names()


def create_detector(name: str, **options: Any) -> Detector:
    """Builds detector ``name`` with ``options`` (unknown options are a clear error)."""
    return DETECTORS.create_checked(name, **options)


def weight_names(tensors: Mapping[str, torch.Tensor], *, min_size: int = 64) -> list[str]:
    """The floating tensors of two or more dimensions with ``min_size`` values or more.

    Decided from the tensors' descriptions, so a lazy checkpoint reads nothing here.

    Example:
        >>> weight_names({"w": torch.zeros(8, 8), "b": torch.zeros(8)})
        ['w']
    """
    return [
        k
        for k, i in describe(tensors).items()
        if i.is_floating_point and i.ndim >= 2 and i.numel >= min_size
    ]


def weight_tensors(
    tensors: Mapping[str, torch.Tensor], *, min_size: int = 64
) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of :func:`weight_names`, read one at a time (lazily for checkpoints)."""
    for name in weight_names(tensors, min_size=min_size):
        yield name, tensors[name]
