"""The HTML report of a run folder: ``DIR/index.html``, opened with no server.

:func:`build_report` reads ``DIR/results.json`` (written by ``covertml reproduce``), writes
the paper-shaped tables (``DIR/tables/*.csv`` and ``DIR/tables.json``), the figures
(``DIR/figures/*.png``), and one HTML page that shows them all with relative links: the
tables, the original-vs-recovered image grids, the decoded text with wrong words marked,
the weight histograms, the accuracy-vs-b and accuracy-vs-m/n plots and the countermeasure
heat maps.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from covertml.errors import ConfigError
from covertml.paths import atomic_write_text
from covertml.report import figures
from covertml.report.tables import Record, Table, all_tables, ok, setting
from covertml.runner.jobs import safe_path

log = logging.getLogger(__name__)

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2} caption{text-align:left;font-weight:bold;padding:.3em 0}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0} figure{margin:1em 0}
.doc{font-family:monospace;font-size:.8em;background:#fafafa;padding:.5em;border:1px solid #eee}
mark.wrong{background:#f8c4c4;color:#900} .muted{color:#777;font-size:.85em}
"""


def load_results(run_dir: Path) -> list[Record]:
    """The records of a run folder, with a one-line error when it is not one."""
    path = run_dir / "results.json"
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} has no results.json", fix="run covertml reproduce --out DIR first"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not valid JSON ({exc})", fix="run covertml reproduce again"
        ) from None
    return list(data)


def write_tables(run_dir: Path, tables: list[Table]) -> None:
    """Every table as CSV (``tables/NAME.csv``) and all of them as ``tables.json``."""
    folder = run_dir / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    for t in tables:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(t.header)
        writer.writerows(t.rows)
        atomic_write_text(folder / f"{t.name}.csv", buf.getvalue())
    atomic_write_text(
        run_dir / "tables.json",
        json.dumps([t.to_dict() for t in tables], indent=1, default=str) + "\n",
    )


def _weights(path: Path, limit: int = 1_000_000) -> np.ndarray | None:
    from covertml.models.files import read_tensors

    if not path.is_file():
        return None
    tensors, _ = read_tensors(path)
    parts = [
        t.detach().float().numpy().ravel()
        for k, t in tensors.items()
        if t.ndim >= 2 and t.is_floating_point()
    ]
    if not parts:
        return None
    w = np.concatenate(parts)
    if w.size > limit:
        w = np.random.default_rng(0).choice(w, limit, replace=False)
    return w


def weight_models(run_dir: Path, records: list[Record], ds: str) -> dict[str, np.ndarray]:
    """Weights of the honest model and the strongest setting of each white-box attack."""
    mine = [
        r
        for r in ok(records)
        if r["cell"]["dataset"] == ds
        and r["cell"]["sanitizer"] == "none"
        and r["cell"]["seed"] == records[0]["cell"]["seed"]
    ]
    out: dict[str, np.ndarray] = {}
    for attack in ("honest", "correlation", "sign", "capacity"):
        rs = [r for r in mine if r["cell"]["attack"] == attack]
        if not rs:
            continue
        strongest = max(
            rs,
            key=lambda r: max(
                [
                    float(v)
                    for v in r["cell"]["attack_options"].values()
                    if isinstance(v, (int, float))
                ]
                or [0.0]
            ),
        )
        w = _weights(run_dir / str(strongest.get("model_file", "")))
        if w is not None:
            out[f"{attack} {setting(strongest)}".replace(" -", "")] = w
    return out


def make_figures(run_dir: Path, records: list[Record]) -> dict[str, list[tuple[str, str]]]:
    """All figures, per dataset: ``{dataset: [(relative path, caption)]}``."""
    folder = run_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[tuple[str, str]]] = {}
    for ds in dict.fromkeys(r["cell"]["dataset"] for r in records):
        made = [
            (
                figures.accuracy_vs_bits(records, ds, folder / f"{ds}-accuracy-vs-b.png"),
                "Accuracy vs b (LSB encoding)",
            ),
            (
                figures.accuracy_vs_ratio(records, ds, folder / f"{ds}-accuracy-vs-m_over_n.png"),
                "Accuracy vs m/n (capacity abuse)",
            ),
            (
                figures.weight_histograms(
                    weight_models(run_dir, records, ds), ds, folder / f"{ds}-weights.png"
                ),
                "Weight distributions, honest vs attacked (cf. paper Figure 6)",
            ),
            (
                figures.robustness_heatmap(records, ds, folder / f"{ds}-countermeasures.png"),
                "Countermeasures heat map",
            ),
        ]
        out[ds] = [
            (p.relative_to(run_dir).as_posix(), caption) for p, caption in made if p is not None
        ]
    return out


def table_html(t: Table) -> str:
    """One table as HTML."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in t.rows
    )
    note = f'<p class="muted">{html.escape(t.note)}</p>' if t.note else ""
    caption = f"<caption>{html.escape(t.title)}</caption>"
    return f'<table id="{t.name}">{caption}<tr>{head}</tr>{body}</table>{note}'


def marked_text(original: list[str], recovered: list[str]) -> str:
    """The decoded words, those that differ from the original at their position marked.

    Example:
        >>> marked_text(["a", "b"], ["a", "c"])
        'a <mark class="wrong" title="was: b">c</mark>'
    """
    words = []
    for i, word in enumerate(recovered):
        truth = original[i] if i < len(original) else ""
        w = html.escape(word)
        words.append(
            w
            if word == truth
            else f'<mark class="wrong" title="was: {html.escape(truth)}">{w}</mark>'
        )
    return " ".join(words)


def recovered_html(run_dir: Path, records: list[Record]) -> tuple[str, str]:
    """Sections of original-vs-recovered image grids and of decoded documents."""
    images, texts = [], []
    for r in ok(records):
        if r["cell"]["sanitizer"] != "none" or r["cell"]["seed"] != records[0]["cell"]["seed"]:
            continue
        arts = (r.get("recovery") or {}).get("artifacts") or {}
        cell_dir = Path("cells") / safe_path(r["id"])
        title = html.escape(f"{r['cell']['dataset']} · {r['cell']['attack']} {setting(r)}")
        if "grid" in arts:
            src = (cell_dir / arts["grid"]).as_posix()
            images.append(
                _figure(src, f"{title}: originals (top), recovered (bottom); {_quality(r)}")
            )
        if "documents" in arts:
            docs = json.loads((run_dir / cell_dir / arts["documents"]).read_text(encoding="utf-8"))
            body = "".join(
                f'<p class="doc">{marked_text(d["original"], d["recovered"])}</p>' for d in docs
            )
            texts.append(f"<h4>{title} ({html.escape(_quality(r))})</h4>{body}")
    return "".join(images) or "<p>No image secrets in this run.</p>", "".join(
        texts
    ) or "<p>No text secrets in this run.</p>"


def _figure(src: str, caption: str) -> str:
    cap = html.escape(caption)
    return f'<figure><img src="{src}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def _quality(r: Record) -> str:
    rec = r.get("recovery") or {}
    if rec.get("mape") is not None:
        return f"MAPE {rec['mape']:.1f}"
    if rec.get("word_recall") is not None:
        p, r_ = 100 * rec["word_precision"], 100 * rec["word_recall"]
        return f"word precision {p:.0f}%, recall {r_:.0f}%"
    return "gone" if not rec.get("recovered") else ""


def build_report(run_dir: str | os.PathLike[str]) -> Path:
    r"""Writes ``index.html``, ``figures/``, ``tables/`` and ``tables.json`` into ``run_dir``.

    Example:
        >>> import tempfile
        >>> from covertml.runner import parse_grid, run_grid
        >>> d = tempfile.mkdtemp()
        >>> _ = run_grid(parse_grid('[datasets.digits]\nepochs = 1\ntrain_limit = 300'), d)
        >>> build_report(d).name
        'index.html'
    """
    root = Path(run_dir)
    records = load_results(root)
    tables = all_tables(records)
    write_tables(root, tables)
    figs = make_figures(root, records)
    images, texts = recovered_html(root, records)
    run = json.loads((root / "run.json").read_text()) if (root / "run.json").is_file() else {}
    summary = run.get("summary", {})
    fig_html = "".join(
        f"<h3>{html.escape(ds)}</h3>" + "".join(_figure(src, cap) for src, cap in items)
        for ds, items in figs.items()
    )
    by_name = {t.name: t for t in tables}
    sections = [
        (
            "Datasets and baselines",
            table_html(by_name["baselines"]) if "baselines" in by_name else "",
        ),
        (
            "White-box attacks",
            "".join(table_html(by_name[n]) for n in ("lsb", "correlation", "sign") if n in by_name),
        ),
        (
            "Black-box attack",
            table_html(by_name["capacity"])
            if "capacity" in by_name
            else "<p>Not in this grid.</p>",
        ),
        (
            "Countermeasures",
            "".join(
                table_html(t) for t in tables if t.name.startswith(("countermeasures", "scan"))
            ),
        ),
        ("Figures", fig_html),
        ("Original vs recovered images", images),
        ("Decoded text (wrong words marked)", texts),
    ]
    nav = " · ".join(
        f'<a href="#s{i}">{html.escape(name)}</a>' for i, (name, _) in enumerate(sections)
    )
    body = "".join(
        f'<h2 id="s{i}">{html.escape(name)}</h2>{content}'
        for i, (name, content) in enumerate(sections)
    )
    name = html.escape(str(run.get("grid", {}).get("name", root.name)))
    done, total = summary.get("done", len(records)), summary.get("total", len(records))
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    links = ", ".join(
        f'<a href="{f}">{f}</a>' for f in ("results.csv", "results.json", "tables.json")
    )
    page = "\n".join(
        [
            '<!doctype html><html lang="en"><head><meta charset="utf-8">',
            f"<title>covertml report: {name}</title><style>{STYLE}</style></head><body>",
            f"<h1>covertml report: {name}</h1>",
            f'<p class="muted">{done} of {total} cells recorded, '
            f"{summary.get('failed', 0)} failed · run time {summary.get('seconds', 0):.0f} s · "
            f"built {built} · numbers: {links}, tables/*.csv · δ is the change in test "
            "accuracy against the honest model of the same seed; MAPE is the mean absolute "
            "pixel error (0 to 255).</p>",
            f"<nav>{nav}</nav>{body}</body></html>",
            "",
        ]
    )
    path = root / "index.html"
    atomic_write_text(path, page)
    log.info("wrote %s", path)
    return path
