"""Scanning many checkpoints in one call: paths and directory trees, one summary.

Each checkpoint is opened, scanned and closed before the next, so memory is that of the
largest checkpoint's largest tensor. A checkpoint that cannot be read does not stop the
others: its one-line error is collected, and the batch's exit code is 2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covertml.attacks.oracle import LabelOracle
from covertml.audit.base import DEFAULT_ALPHA
from covertml.audit.scan import (
    EXIT_CLEAN,
    EXIT_ERROR,
    EXIT_FINDINGS,
    ScanReport,
    context_from_file,
    scan,
)
from covertml.data.base import Dataset
from covertml.errors import CovertMLError
from covertml.models.checkpoint import find_checkpoints

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchReport:
    """The scans of several checkpoints.

    Attributes:
        reports: One scan per checkpoint that could be read, in the order found.
        errors: Checkpoints that could not be scanned, with the one-line reason.
    """

    reports: tuple[ScanReport, ...]
    errors: dict[str, str] = field(default_factory=dict)
    failures: dict[str, CovertMLError] = field(default_factory=dict, repr=False, compare=False)

    @property
    def exit_code(self) -> int:
        """2 if any checkpoint failed, else 1 if any was flagged, else 0."""
        if self.errors:
            return EXIT_ERROR
        return EXIT_FINDINGS if any(r.flagged for r in self.reports) else EXIT_CLEAN

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "checkpoints": len(self.reports) + len(self.errors),
            "flagged": [r.model for r in self.reports if r.flagged],
            "errors": dict(self.errors),
            "scans": [r.to_dict() for r in self.reports],
        }


def scan_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    detectors: Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
    reference: str | os.PathLike[str] | None = None,
    dataset: Dataset | None = None,
    oracle: LabelOracle | None = None,
    seed: int = 0,
    allow_pickle: bool = False,
    device: str = "cpu",
) -> BatchReport:
    """Scans every checkpoint under ``paths`` (files, checkpoint directories, trees).

    Example:
        >>> import tempfile, pathlib, torch
        >>> from safetensors.torch import save_file
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> save_file({"w": torch.randn(64, 64).to(torch.bfloat16)}, d / "a.safetensors")
        >>> _ = (d / "b.safetensors").write_bytes(b"junk")
        >>> b = scan_paths([d], detectors=["distribution"])
        >>> len(b.reports), [pathlib.Path(p).name for p in b.errors]
        (1, ['b.safetensors'])
    """
    found: list[Path] = []
    failures: dict[str, CovertMLError] = {}
    for given in paths:  # a path that holds nothing is its own error, not the batch's
        try:
            found += [p for p in find_checkpoints([given]) if p not in found]
        except CovertMLError as exc:
            failures[str(given)] = exc
    reports = []
    for path in found:
        try:
            ctx = context_from_file(
                path,
                reference=reference,
                dataset=dataset,
                oracle=oracle,
                seed=seed,
                allow_pickle=allow_pickle,
                device=device,
            )
            reports.append(scan(ctx, detectors=detectors, name=str(path), alpha=alpha))
        except CovertMLError as exc:
            log.info("%s: %s", path, exc)
            failures[str(path)] = exc
    errors = {k: str(v) for k, v in failures.items()}
    return BatchReport(tuple(reports), errors, failures)
