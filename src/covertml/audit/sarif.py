"""SARIF 2.1.0 output of scans, for code-scanning UIs (GitHub, GitLab, Azure DevOps).

One run of tool ``covertml``; one rule per detector; one result per flagged finding, located
at the file that holds the tensor (``physicalLocation``) and the tensor itself
(``logicalLocations``, kind ``member``). Checkpoints that could not be read are reported as
tool execution notifications, so a pipeline sees the failure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from covertml import __version__
from covertml.audit.base import DETECTORS
from covertml.audit.scan import ScanReport
from covertml.paths import atomic_write_text

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/covertml/covertml"


def _uri(path: str) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.resolve().as_uri()


def _rules(names: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        entry = DETECTORS.get(name) if name in DETECTORS.names() else None
        text = entry.help if entry is not None else name
        out.append(
            {
                "id": name,
                "name": name.replace("-", " ").title().replace(" ", ""),
                "shortDescription": {"text": text.split(". ")[0][:200]},
                "fullDescription": {"text": text},
                "defaultConfiguration": {"level": "error"},
                "properties": {"kind": str(entry.meta.get("kind", "")) if entry else ""},
            }
        )
    return out


def to_sarif(
    reports: Sequence[ScanReport], *, errors: dict[str, str] | None = None
) -> dict[str, Any]:
    """The SARIF log of ``reports`` (and of checkpoints that failed, in ``errors``).

    Example:
        >>> from covertml.audit import ScanContext, scan
        >>> import torch
        >>> r = scan(ScanContext({"w": torch.randn(64, 64)}), detectors=["distribution"])
        >>> log = to_sarif([r])
        >>> log["version"], log["runs"][0]["tool"]["driver"]["rules"][0]["id"]
        ('2.1.0', 'distribution')
    """
    names = sorted({r.detector for rep in reports for r in rep.reports})
    index = {n: i for i, n in enumerate(names)}
    results = []
    for rep in reports:
        for r in rep.reports:
            for f in r.findings:
                if not f.flagged:
                    continue
                file = rep.locations.get(f.layer or "", rep.model)
                logical = [{"name": f.layer or "(model)", "kind": "member"}]
                results.append(
                    {
                        "ruleId": r.detector,
                        "ruleIndex": index[r.detector],
                        "level": "error",
                        "message": {
                            "text": f"{r.detector}: {f.layer or 'the model'} is suspicious "
                            f"(p = {f.p_adjusted:.3g} family-wise, alpha = {rep.alpha:g}; "
                            f"null: {f.null})"
                        },
                        "locations": [
                            {
                                "physicalLocation": {"artifactLocation": {"uri": _uri(file)}},
                                "logicalLocations": logical,
                            }
                        ],
                        "properties": {
                            "checkpoint": rep.model,
                            "score": f.score,
                            "p_value": f.p_value,
                            "p_adjusted": f.p_adjusted,
                            "alpha": rep.alpha,
                            "evidence": json.loads(json.dumps(f.evidence, default=str)),
                        },
                    }
                )
    notes = [
        {"level": "error", "message": {"text": f"{path}: {why}"}}
        for path, why in (errors or {}).items()
    ]
    for rep in reports:
        notes += [
            {"level": "note", "message": {"text": f"{rep.model}: skipped tensor {k}: {why}"}}
            for k, why in rep.skipped_tensors.items()
        ]
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "covertml",
                        "version": __version__,
                        "informationUri": INFO_URI,
                        "rules": _rules(names),
                    }
                },
                "invocations": [
                    {"executionSuccessful": not errors, "toolExecutionNotifications": notes}
                ],
                "results": results,
            }
        ],
    }


def write_sarif(
    path: str | os.PathLike[str],
    reports: Sequence[ScanReport],
    *,
    errors: dict[str, str] | None = None,
) -> None:
    """Writes :func:`to_sarif` to ``path`` atomically."""
    atomic_write_text(path, json.dumps(to_sarif(reports, errors=errors), indent=2) + "\n")
