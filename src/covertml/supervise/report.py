"""The guard's verdict: what the watchers saw, tested, and the model files scanned.

Every finding that is a statistical test carries a p-value; those are corrected together
(Holm) so that an honest run is flagged with probability at most ``alpha`` (for inputs:
under augmentations like the matcher's null). Tampering with the watchers is reported as a
finding without a p-value: honest code has no reason to do it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from covertml.audit import ScanContext, ScanReport, context_from_file, scan
from covertml.audit.base import DEFAULT_ALPHA, create_detector, holm
from covertml.data.base import Dataset
from covertml.errors import CovertMLError
from covertml.supervise.matcher import MatchStats
from covertml.supervise.watch import Observations

log = logging.getLogger(__name__)

TOLERANCE = 0.01  # share of honest inputs allowed to match no owner item
# Snapshots are audited for encodings of the owner's data; their low bits are the
# ledger's business (lsb-stats on a half-trained model says nothing about a payload).
SNAPSHOT_DETECTORS = ("owner-correlation", "owner-sign", "distribution")
DETECTOR_TEXT = {
    "owner-correlation": "weight values correlate with the owner's training items",
    "owner-sign": "weight signs spell out the owner's training items",
    "distribution": "the weights' distribution departs from an honest model's",
}
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".onnx", ".gguf")
TAMPER_TEXT = {
    "hooks-removed": "the script removed covertml's hooks (or replaced nn.Module.__call__)",
    "changed-outside-step": "parameters changed outside any optimizer step "
    "(and not back to an earlier state)",
}


@dataclass(frozen=True)
class GuardFinding:
    """One thing the guard found.

    Attributes:
        kind: ``foreign-inputs``, ``unverifiable-inputs``, ``encoding``, ``model-file``,
            ``tamper`` or ``no-forward``.
        message: One line saying what was seen.
        flagged: Whether it counts against the run.
        p_value: The test's p-value (``None`` for tampering), Holm-adjusted over the run.
        step: The optimizer step it concerns (first significant snapshot, tamper step).
        evidence: The numbers behind it.
    """

    kind: str
    message: str
    flagged: bool
    p_value: float | None = None
    step: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GuardReport:
    """The guard's verdict on one run of a training script.

    Attributes:
        verdict: ``"suspicious"``, ``"no findings"`` or ``"error"`` (the script failed).
        findings: Every finding, flagged ones first.
        alpha: Family-wise false-positive rate of the statistical findings.
        observed: The watchers' counts (:meth:`Observations.summary`).
        matcher: How the input threshold was set (``None`` when inputs were not matched).
        audits: Snapshot audits: ``{"step", "flagged", "p_value", "detectors"}``.
        files: Model files scanned: ``{"path", "verdict", "p_value", "sanitized"}``.
        script_exit: The script's exit code (``None`` in-process).
        command: The command that ran.
    """

    verdict: str
    findings: tuple[GuardFinding, ...]
    alpha: float
    observed: dict[str, Any]
    matcher: MatchStats | None = None
    audits: tuple[dict[str, Any], ...] = ()
    files: tuple[dict[str, Any], ...] = ()
    script_exit: int | None = None
    command: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        """Whether any finding counts against the run."""
        return any(f.flagged for f in self.findings)

    @property
    def exit_code(self) -> int:
        """0 nothing found, 1 findings, 2 the script failed (and nothing was found)."""
        if self.flagged:
            return 1
        return 2 if self.script_exit not in (None, 0) else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = dataclasses.asdict(self)
        d["findings"] = [f.to_dict() for f in self.findings]
        d["matcher"] = self.matcher.to_dict() if self.matcher else None
        d["flagged"], d["exit_code"] = self.flagged, self.exit_code
        return d


def input_finding(seen: Observations, matcher: MatchStats) -> GuardFinding:
    """Tests whether more than ``TOLERANCE`` of the checked inputs match no owner item."""
    n, k = seen.inputs_checked, seen.inputs_unmatched
    p = float(stats.binom.sf(k - 1, n, TOLERANCE)) if n and k else 1.0
    share = k / n if n else 0.0
    return GuardFinding(
        "foreign-inputs",
        f"{k:,} of {n:,} training inputs checked ({share:.1%}) match no item of the owner's "
        f"data (score < {matcher.threshold:.3f}; tolerated: {TOLERANCE:.0%})",
        flagged=False,
        p_value=p,
        evidence={
            "checked": n,
            "unmatched": k,
            "share": share,
            "tolerance": TOLERANCE,
            "seen": seen.inputs_seen,
        },
    )


def audit_snapshots(
    snapshots: Sequence[tuple[int, dict[str, torch.Tensor]]],
    dataset: Dataset,
    *,
    alpha: float,
    seed: int = 0,
    known: dict[str, ScanReport] | None = None,
) -> tuple[list[dict[str, Any]], GuardFinding | None]:
    """Scans the final snapshot; if it is flagged, finds the first flagged one by bisection.

    The final state's scan is recorded in ``known`` under its :func:`digest`, so a model
    file holding exactly that state is not scanned twice.
    """
    known = {} if known is None else known
    if not snapshots:
        return [], None
    done: dict[int, ScanReport] = {}

    def run(i: int) -> ScanReport:
        if i not in done:
            ctx = ScanContext(snapshots[i][1], dataset=dataset, seed=seed)
            names = [d for d in SNAPSHOT_DETECTORS if create_detector(d).unavailable(ctx) is None]
            done[i] = scan(ctx, detectors=names, alpha=alpha)
        return done[i]

    last = len(snapshots) - 1
    final = run(last)
    first = last
    if final.flagged:
        lo, hi = 0, last  # invariant: hi flagged
        while lo < hi:
            mid = (lo + hi) // 2
            if run(mid).flagged:
                hi = mid
            else:
                lo = mid + 1
        first = hi
    audits = [
        {
            "step": snapshots[i][0],
            "flagged": r.flagged,
            "p_value": min((d.p_value for d in r.reports), default=1.0),
            "detectors": [d.detector for d in r.reports if d.flagged],
        }
        for i, r in sorted(done.items())
    ]
    known[digest(snapshots[last][1])] = final
    p = min((d.p_value for d in final.reports), default=1.0)
    who = [d.detector for d in final.reports if d.flagged] or ["none"]
    step = snapshots[first][0]
    when = "the final state" if step < 0 else f"step {step}"
    what = "; ".join(DETECTOR_TEXT.get(d, d) for d in who)
    return audits, GuardFinding(
        "encoding",
        f"{what} ({', '.join(who)}); first significant at {when}"
        if final.flagged
        else "no detector found an encoding in the trained weights",
        flagged=False,
        p_value=p,
        step=step if final.flagged else None,
        evidence={"detectors": who, "audited_steps": [a["step"] for a in audits]},
    )


def digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """A hash of a state's tensors (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_files(saved: Sequence[str], roots: Sequence[Path], since: float) -> list[Path]:
    """Files the script saved, and model files written under ``roots`` since ``since``."""
    found = {Path(p) for p in saved if Path(p).is_file()}
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                try:
                    if path.suffix in MODEL_SUFFIXES and path.stat().st_mtime >= since:
                        found.add(path)
                except OSError:  # a dangling link, a file gone meanwhile
                    continue
    return sorted(p for p in found if ".sanitized-" not in p.name)


def scan_files(
    paths: Sequence[Path],
    dataset: Dataset | None,
    *,
    alpha: float,
    sanitize: str | None = None,
    seed: int = 0,
    known: Mapping[str, ScanReport] | None = None,
    steps_only: bool = False,
    device: str = "cpu",
) -> tuple[list[dict[str, Any]], list[GuardFinding]]:
    """Scans each model file (pickles with ``weights_only``); sanitized copies beside them.

    ``device`` is where the scans' probe queries run; the weights are read on the CPU.
    """
    rows, findings = [], []
    for path in paths:
        row: dict[str, Any] = {"path": str(path)}
        try:
            ctx = context_from_file(
                path, dataset=dataset, seed=seed, allow_pickle=True, device=device
            )
            same = digest(ctx.tensors) in (known or {})
        except (CovertMLError, OSError) as exc:
            row.update(verdict="unreadable", error=str(exc))
            rows.append(row)
            findings.append(
                GuardFinding(
                    "unverifiable-file",
                    f"{path.name} was written by the script and cannot be read as a model "
                    f"({exc}); whatever it holds was not checked",
                    flagged=True,
                    evidence={"path": str(path)},
                )
            )
            continue
        row["same_as_final_state"] = same
        if same and steps_only:
            # audited as the final state, and only optimizer steps wrote its values: a
            # low-bit payload would have been a change outside a step (the ledger's test,
            # exact where lsb-stats is statistical and fires on some honest digits models)
            row.update(verdict="the audited final state", p_value=1.0, detectors=[])
            if sanitize:
                _sanitize_row(row, path, sanitize, dataset, seed)
            rows.append(row)
            continue
        # the final state's encodings are audited already: only its low bits are left
        names = None
        if same:
            names = [d for d in ("lsb-stats",) if create_detector(d).unavailable(ctx) is None]
        report = scan(ctx, detectors=names, name=str(path), alpha=alpha)
        p = min((d.p_value for d in report.reports), default=1.0)
        row.update(
            verdict=report.verdict,
            p_value=p,
            detectors=[d.detector for d in report.reports if d.flagged],
        )
        if sanitize:
            _sanitize_row(row, path, sanitize, dataset, seed)
        rows.append(row)
        findings.append(
            GuardFinding(
                "model-file",
                f"{path.name}: {report.verdict}"
                + (f" ({', '.join(row['detectors'])})" if row["detectors"] else ""),
                flagged=False,
                p_value=p,
                evidence={"path": str(path), "format": report.format},
            )
        )
    return rows, findings


def _sanitize_row(
    row: dict[str, Any], path: Path, method: str, dataset: Dataset | None, seed: int
) -> None:
    try:
        row["sanitized"] = _sanitize(path, method, dataset, seed)
    except CovertMLError as exc:
        row["sanitize_error"] = str(exc)


def _sanitize(path: Path, method: str, dataset: Dataset | None, seed: int) -> str:
    from covertml.defenses import create_sanitizer, sanitize_file

    target = path.with_name(f"{path.name}.sanitized-{method}.safetensors")
    sanitize_file(
        path,
        target,
        create_sanitizer(method),
        seed=seed,
        dataset=dataset,
        allow_pickle=True,
        overwrite=target.exists(),
    )  # an earlier guard run's copy
    return str(target)


def build_report(
    seen: Observations,
    *,
    matcher: MatchStats | None,
    dataset: Dataset | None,
    alpha: float = DEFAULT_ALPHA,
    files: Sequence[Path] = (),
    sanitize: str | None = None,
    script_exit: int | None = None,
    command: Sequence[str] = (),
    seed: int = 0,
    device: str = "cpu",
) -> GuardReport:
    """Tests what ``seen`` holds and scans ``files``; Holm over every p-value."""
    tests: list[GuardFinding] = []
    if matcher is not None:
        tests.append(input_finding(seen, matcher))
    audits: list[dict[str, Any]] = []
    known: dict[str, ScanReport] = {}
    if dataset is not None:
        audits, enc = audit_snapshots(seen.snapshots, dataset, alpha=alpha, seed=seed, known=known)
        if enc is not None:
            tests.append(enc)
    rows, file_findings = scan_files(
        files,
        dataset,
        alpha=alpha,
        sanitize=sanitize,
        seed=seed,
        known=known,
        steps_only=not seen.tamper,  # the ledger saw every change, and all were steps
        device=device,
    )
    tests += [f for f in file_findings if f.p_value is not None]
    adjusted = holm([f.p_value for f in tests if f.p_value is not None])
    findings = [
        dataclasses.replace(f, p_value=float(a), flagged=bool(a <= alpha))
        for f, a in zip(tests, adjusted, strict=True)
    ]
    findings += [f for f in file_findings if f.p_value is None]  # unreadable: flagged as is
    findings += _other_findings(seen, failed=script_exit not in (None, 0))
    findings.sort(key=lambda f: (not f.flagged, f.p_value if f.p_value is not None else 0))
    flagged = any(f.flagged for f in findings)
    verdict = (
        "suspicious" if flagged else ("error" if script_exit not in (None, 0) else "no findings")
    )
    return GuardReport(
        verdict=verdict,
        findings=tuple(findings),
        alpha=alpha,
        observed=seen.summary(),
        matcher=matcher,
        audits=tuple(audits),
        files=tuple(rows),
        script_exit=script_exit,
        command=tuple(command),
    )


def _other_findings(seen: Observations, *, failed: bool = False) -> list[GuardFinding]:
    out = []
    kinds: dict[str, list[dict[str, Any]]] = {}
    for t in seen.tamper:
        kinds.setdefault(t["kind"], []).append(t)
    for kind, events in kinds.items():
        regular = all(e.get("regular") for e in events)
        text = TAMPER_TEXT.get(kind, kind)
        if regular:
            text += " after most steps (a regular transform: weight clipping, max-norm)"
        out.append(
            GuardFinding(
                "tamper",
                f"{text}: {len(events)} time(s), first {events[0]['when']}",
                flagged=not regular,
                step=int(events[0]["step"]),
                evidence={"kind": kind, "events": events[:10]},
            )
        )
    if seen.steps == 0 and not failed:  # a failed script is an error, reported as such
        out.append(
            GuardFinding(
                "nothing-seen",
                "the guard saw no optimizer step: training in other processes, a hand-written "
                "update, or none at all -- it cannot vouch for this run",
                flagged=True,
            )
        )
    if seen.steps_without_forward:
        out.append(
            GuardFinding(
                "no-forward",
                f"{seen.steps_without_forward} optimizer step(s) with no model forward the "
                "guard saw (training that bypasses nn.Module)",
                flagged=True,
                evidence={"steps": seen.steps, "without_forward": seen.steps_without_forward},
            )
        )
    checked = seen.inputs_checked + seen.inputs_uncomparable
    if seen.inputs_uncomparable > TOLERANCE * max(checked, 1):
        out.append(
            GuardFinding(
                "unverifiable-inputs",
                f"{seen.inputs_uncomparable:,} training inputs could not be compared with the "
                f"owner's data (shapes: {', '.join(seen.shapes)})",
                flagged=True,
                evidence={"uncomparable": seen.inputs_uncomparable, "shapes": seen.shapes},
            )
        )
    if seen.inputs_seen == 0 and seen.steps:
        out.append(
            GuardFinding(
                "no-forward",
                "the script stepped an optimizer but no training batch entered a model",
                flagged=True,
            )
        )
    return out


def unmatched_images(examples: Sequence[dict[str, Any]]) -> np.ndarray | None:
    """The kept unmatched inputs as ``uint8`` grey images (for the HTML page)."""
    arrays = [e["input"] for e in examples]
    if not arrays or arrays[0].ndim != 3:
        return None
    arrays = [a for a in arrays if a.shape == arrays[0].shape]
    x = np.stack(arrays).mean(axis=1)
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    return np.asarray((x - lo) / np.maximum(hi - lo, 1e-8) * 255, dtype=np.uint8)
