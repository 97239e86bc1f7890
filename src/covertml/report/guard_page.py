"""The guard's HTML page: verdict, findings, offending inputs, audits and files."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np

from covertml.paths import atomic_write_text
from covertml.report.grid import image_grid
from covertml.supervise.report import GuardReport
from covertml.supervise.watch import COUNTS

STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;
text-align:left;vertical-align:top}.flag{color:#b00;font-weight:bold}.ok{color:#070}
code{background:#f4f4f4;padding:0 .2rem}"""


def _png(images: np.ndarray) -> str:
    buf = io.BytesIO()
    image_grid([images], columns=16).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _rows(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def guard_html(report: GuardReport, *, examples: np.ndarray | None = None) -> str:
    """The page, as a string (``examples``: unmatched inputs as ``uint8`` grey images)."""
    e = html.escape
    colour = "flag" if report.flagged else "ok"
    parts = [
        f"<!doctype html><meta charset=utf-8><title>covertml guard</title><style>{STYLE}</style>",
        "<h1>covertml guard</h1>",
        f"<p>Command: <code>{e(' '.join(report.command))}</code>; script exit code "
        f"{report.script_exit}. Verdict: <span class={colour}>{e(report.verdict)}</span> "
        f"(statistical findings corrected together, family-wise alpha = {report.alpha:g}).</p>",
        "<h2>Findings</h2>",
        _rows(
            [
                [
                    f"<span class={'flag' if f.flagged else 'ok'}>"
                    f"{'FLAG' if f.flagged else 'ok'}</span>",
                    e(f.kind),
                    e(f.message),
                    "" if f.p_value is None else f"{f.p_value:.3g}",
                    "" if f.step is None else str(f.step),
                ]
                for f in report.findings
            ],
            ["", "kind", "what was seen", "p (family)", "step"],
        ),
    ]
    o = report.observed
    parts.append("<h2>What the watchers saw</h2>")
    parts.append(
        _rows(
            [
                [e(k.replace("_", " ")), e(str(o.get(k)))]
                for k in (
                    *COUNTS,
                    "input_shapes",
                    "score_quantiles",
                    "guard_seconds",
                    "wall_seconds",
                )
            ],
            ["", ""],
        )
    )
    if report.matcher is not None:
        m = report.matcher
        parts.append(
            f"<p>Input matching: an input is unmatched below a score of {m.threshold:.3f}, the "
            f"{m.quantile:.1%} quantile of the owner's own items under random crops, flips, "
            f"jitter, mixup and cutmix (median {m.null_median:.3f}); uniform noise scores a "
            f"median {m.noise_median:.3f} and {m.noise_pass:.1%} of it passes.</p>"
        )
    if examples is not None and len(examples):
        parts.append("<h2>Inputs that match no owner item</h2>")
        parts.append(f"<img alt='unmatched inputs' src='{_png(examples)}'>")
    if report.audits:
        parts.append("<h2>Weight snapshots audited</h2>")
        parts.append(
            _rows(
                [
                    [
                        str(a["step"]) if a["step"] >= 0 else "final",
                        "yes" if a["flagged"] else "no",
                        f"{a['p_value']:.3g}",
                        e(", ".join(a["detectors"])),
                    ]
                    for a in report.audits
                ],
                ["step", "flagged", "smallest p", "detectors"],
            )
        )
    if report.files:
        parts.append("<h2>Model files the script wrote</h2>")
        parts.append(
            _rows(
                [
                    [
                        e(f["path"]),
                        e(f.get("verdict", "")),
                        e(", ".join(f.get("detectors", []))),
                        e(f.get("sanitized", "") or f.get("error", "")),
                    ]
                    for f in report.files
                ],
                ["file", "verdict", "detectors", "sanitized copy / error"],
            )
        )
    parts.append(
        "<p>The guard shares the process with the script: see docs/GUARD.md for what it "
        "cannot see.</p>"
    )
    return "\n".join(parts)


def write_guard_html(
    report: GuardReport, path: str | os.PathLike[str], *, examples: np.ndarray | None = None
) -> Path:
    """Writes :func:`guard_html` to ``path`` atomically."""
    atomic_write_text(path, guard_html(report, examples=examples))
    return Path(path)
