"""Detectors: look inside a released model (or ask it questions) for traces of the attacks.

Each detector reads a :class:`ScanContext` -- the model's tensors, and whichever of a
reference model, the owner's data and a label oracle the caller has -- and returns a
:class:`DetectorReport`: a model-level score against a threshold, per-layer
:class:`Finding` objects with their evidence, and a note saying what the score can and
cannot tell. Detectors register by name, like attacks and sanitizers.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from covertml.attacks.oracle import LabelOracle
from covertml.data.base import Dataset
from covertml.models.files import ModelInfo
from covertml.registry import Registry


@dataclass(frozen=True)
class Finding:
    """One detector's result on one layer (``layer`` is ``None`` for whole-model tests).

    Attributes:
        detector: Detector name.
        layer: Tensor name, or ``None``.
        score: The detector's statistic (higher = more suspicious).
        threshold: Score above which the layer is flagged.
        flagged: ``score > threshold``.
        evidence: The statistics behind the score.
    """

    detector: str
    layer: str | None
    score: float
    threshold: float
    flagged: bool
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DetectorReport:
    """A detector's verdict on a model.

    Attributes:
        detector: Detector name.
        score: Model-level score (the largest layer score, for per-layer detectors).
        threshold: Flagging threshold.
        flagged: Whether the model is flagged.
        findings: Per-layer (or whole-model) findings, most suspicious first.
        note: What the score means and what it cannot show.
    """

    detector: str
    score: float
    threshold: float
    flagged: bool
    findings: tuple[Finding, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = dataclasses.asdict(self)
        d["findings"] = [f.to_dict() for f in self.findings]
        return d


@dataclass(frozen=True, eq=False)
class ScanContext:
    """What a scan has to work with.

    Attributes:
        tensors: The model's state dict.
        info: Architecture and metadata, when the file carries them.
        model: The rebuilt model, when it could be rebuilt (local probing).
        reference: A trusted model's state dict of the same architecture.
        reference_model: A trusted model for the same task (any architecture), rebuilt.
        dataset: The owner's data (owner audits; text probes).
        oracle: A label oracle (the prediction API) for black-box probes.
        seed: Seed of every random choice the detectors make.
    """

    tensors: dict[str, torch.Tensor]
    info: ModelInfo | None = None
    model: nn.Module | None = None
    reference: dict[str, torch.Tensor] | None = None
    reference_model: nn.Module | None = None
    dataset: Dataset | None = None
    oracle: LabelOracle | None = None
    seed: int = 0


def report_from_findings(
    name: str, findings: list[Finding], *, threshold: float, note: str
) -> DetectorReport:
    """A report whose score is the largest finding score."""
    ordered = tuple(sorted(findings, key=lambda f: -f.score))
    score = ordered[0].score if ordered else 0.0
    return DetectorReport(name, score, threshold, score > threshold, ordered, note)


class Detector(ABC):
    """Base class of the detectors (subclasses are frozen dataclasses)."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "white-box", "owner-audit" or "black-box"

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Why this detector cannot run on ``ctx`` (``None`` when it can)."""
        return None

    @abstractmethod
    def run(self, ctx: ScanContext) -> DetectorReport:
        """Examines the model in ``ctx``."""

    def options(self) -> dict[str, Any]:
        """The detector's options, for records."""
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


DETECTORS: Registry[Detector] = Registry("detector")


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Class decorator registering a detector under ``cls.name``."""
    return DETECTORS.register_class(cls, kind=cls.kind)


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


def weight_tensors(
    tensors: dict[str, torch.Tensor], *, min_size: int = 64
) -> list[tuple[str, torch.Tensor]]:
    """The floating tensors of two or more dimensions with ``min_size`` values or more."""
    return [
        (k, v)
        for k, v in tensors.items()
        if v.is_floating_point() and v.ndim >= 2 and v.numel() >= min_size
    ]
