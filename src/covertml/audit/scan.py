"""The scanner: every applicable detector on one model, with a verdict and exit code."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from covertml.attacks.oracle import LabelOracle
from covertml.audit.base import (
    DEFAULT_ALPHA,
    DETECTORS,
    DetectorReport,
    ScanContext,
    correct,
    create_detector,
)
from covertml.data.base import Dataset
from covertml.errors import ConfigError, CovertMLError
from covertml.floats import float_format
from covertml.models.checkpoint import Checkpoint, describe, open_checkpoint
from covertml.models.files import ModelInfo, load_model, read_info

log = logging.getLogger(__name__)

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class ScanReport:
    """All detector reports on one model.

    Attributes:
        model: What was scanned (a path or a description).
        verdict: ``"suspicious"`` when any detector flags the model, else ``"no findings"``.
        reports: One report per detector that ran, Holm-corrected together.
        alpha: The family-wise false-positive rate: an honest model is flagged with
            probability at most ``alpha`` (over every detector, tensor and hypothesis).
        skipped: Detectors that could not run, with the reason.
        seconds: Wall time of the scan.
        format: The checkpoint's format (``safetensors``, ``gguf``, ...).
        values: Values in the readable tensors.
        skipped_tensors: Tensors that could not be read as numbers, with the reason.
        locations: For each tensor, the file that holds it (for SARIF locations).
    """

    model: str
    verdict: str
    reports: tuple[DetectorReport, ...]
    alpha: float = DEFAULT_ALPHA
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    format: str = ""
    values: int = 0
    skipped_tensors: dict[str, str] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """Whether any detector flagged the model."""
        return any(r.flagged for r in self.reports)

    @property
    def exit_code(self) -> int:
        """0 when nothing was found, 1 when something was (model-scanner convention)."""
        return EXIT_FINDINGS if self.flagged else EXIT_CLEAN

    def report(self, name: str) -> DetectorReport:
        """The report of detector ``name``."""
        for r in self.reports:
            if r.detector == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "model": self.model,
            "verdict": self.verdict,
            "flagged": self.flagged,
            "alpha": self.alpha,
            "tests": sum(f.tests for r in self.reports for f in r.findings),
            "detectors": [r.to_dict() for r in self.reports],
            "skipped": dict(self.skipped),
            "seconds": self.seconds,
            "format": self.format,
            "values": self.values,
            "skipped_tensors": dict(self.skipped_tensors),
        }


def scan(
    ctx: ScanContext,
    *,
    detectors: Sequence[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    name: str = "model",
    alpha: float = DEFAULT_ALPHA,
) -> ScanReport:
    """Runs ``detectors`` (default: every default one that applies) on the model in ``ctx``.

    Every finding of every detector is one test with its own p-value; they are corrected
    together (Holm), so an honest model is flagged with probability at most ``alpha``.
    A detector asked for by name that cannot run is an error; one that is only part of
    the default set is skipped with its reason.

    Example:
        >>> from covertml.models import create_model
        >>> m = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
        >>> r = scan(ScanContext(m.state_dict()), detectors=["distribution"])
        >>> r.reports[0].detector, r.verdict in ("suspicious", "no findings")
        ('distribution', True)
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}", fix="use e.g. --alpha 1e-3")
    start = time.perf_counter()
    explicit = detectors is not None
    names = (
        list(detectors)
        if detectors is not None
        else [e.name for e in DETECTORS if e.meta.get("default", True)]
    )
    reports, skipped = [], {}
    for det_name in names:
        detector = create_detector(det_name, **(options or {}).get(det_name, {}))
        reason = detector.unavailable(ctx)
        if reason is not None:
            if explicit:
                raise ConfigError(
                    f"detector {det_name!r} cannot run: {reason}", fix="give what it needs"
                )
            skipped[det_name] = reason
            continue
        t = time.perf_counter()
        reports.append(detector.run(ctx, alpha=alpha))
        log.info("%s: %.2f s", det_name, time.perf_counter() - t)
    corrected = correct(reports, alpha=alpha)
    flagged = any(r.flagged for r in corrected)
    ck = ctx.tensors if isinstance(ctx.tensors, Checkpoint) else None
    return ScanReport(
        model=name,
        verdict="suspicious" if flagged else "no findings",
        reports=corrected,
        alpha=alpha,
        skipped=skipped,
        seconds=time.perf_counter() - start,
        format=ck.format if ck is not None else "memory",
        values=sum(i.numel for i in describe(ctx.tensors).values()),
        skipped_tensors={**(ck.skipped if ck is not None else {}), **_no_bit_test(ctx)},
        locations={k: i.file for k, i in ck.infos.items()} if ck is not None else {},
    )


def _no_bit_test(ctx: ScanContext) -> dict[str, str]:
    """Float tensors whose low bits nothing here tests (float64, float8, ...), with why."""
    return {
        k: f"{i.dtype}: lsb-stats reads float32, float16 and bfloat16 words only (the "
        "other detectors still see its values)"
        for k, i in describe(ctx.tensors).items()
        if i.is_floating_point and float_format(i.dtype) is None
    }


def context_from_file(
    path: str | os.PathLike[str],
    *,
    reference: str | os.PathLike[str] | None = None,
    dataset: Dataset | None = None,
    oracle: LabelOracle | None = None,
    seed: int = 0,
    allow_pickle: bool = False,
    device: str = "cpu",
) -> ScanContext:
    """A :class:`ScanContext` for a checkpoint, read lazily (rebuilt when its metadata allows).

    Args:
        path: A model file, shard index or checkpoint directory (any format
            :func:`~covertml.models.checkpoint.open_checkpoint` reads).
        reference: A trusted checkpoint of the same architecture.
        dataset: The owner's data.
        oracle: A label oracle (the prediction API).
        seed: Seed of the detectors' random choices.
        allow_pickle: Also read pickle-based files (``weights_only=True``).
        device: Where the detectors that run the model (the probe) run it.
    """
    tensors = open_checkpoint(path, allow_pickle=allow_pickle)
    info, model = _rebuild(path, tensors, allow_pickle=allow_pickle)
    ref: Checkpoint | None = None
    ref_model = None
    if reference is not None:
        ref = open_checkpoint(reference, allow_pickle=allow_pickle)
        _, ref_model = _rebuild(reference, ref, allow_pickle=allow_pickle)
        shared = [k for k in tensors if k in ref and ref.infos[k].shape == tensors.infos[k].shape]
        if not shared:
            raise ConfigError(
                f"reference {reference} shares no tensor with {path}",
                fix="pass a reference model of the same architecture",
            )
    return ScanContext(
        tensors,
        info=info,
        model=model,
        reference=ref,
        reference_model=ref_model,
        dataset=dataset,
        oracle=oracle,
        seed=seed,
        device=device,
    )


def _rebuild(
    path: str | os.PathLike[str], ck: Checkpoint, *, allow_pickle: bool
) -> tuple[ModelInfo | None, torch.nn.Module | None]:
    """The model behind a covertml checkpoint (for probes); ``None`` for foreign ones."""
    if "architecture" not in ck.metadata or not ck.format.startswith(("safetensors", "pickle")):
        return None, None
    try:
        info = read_info(ck.metadata, path=path)
        if ck.format != "safetensors":
            return info, None
        return info, load_model(ck.path, allow_pickle=allow_pickle).model
    except CovertMLError as exc:
        log.info("scanning tensors only: %s", exc)
        return None, None
