"""The paper-shaped tables of a run, computed from its cell records (``results.json``).

Every table is a :class:`Table` (title, header, rows) with the numbers averaged over seeds
(``mean ± sd`` when there is more than one). The same tables are written as CSV and JSON
beside the HTML report.

Example:
    >>> rec = {"id": "d/honest/none/seed0", "status": "ok", "test_accuracy": 0.9,
    ...        "cell": {"dataset": "d", "attack": "honest", "attack_options": {},
    ...                 "sanitizer": "none", "sanitizer_options": {}, "seed": 0}}
    >>> baselines([rec]).rows[0][:1]
    ['d']
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from covertml.runner.config import _label

Record = dict[str, Any]

#: Reported baselines (approximate; ../PAPER_NOTES): dataset -> (model, accuracy).
PAPER_BASELINES: dict[str, str] = {
    "cifar10": "≈92.9% (ResNet, 50k images)",
    "lfw-gender": "≈87.8% (CNN)",
    "20news": "≈80% (linear, 130k features)",
    "imdb": "≈90% (linear)",
}


@dataclass(frozen=True)
class Table:
    """A titled table of strings (numbers formatted), plus the raw values for CSV/JSON."""

    name: str
    title: str
    header: tuple[str, ...]
    rows: list[list[str]]
    values: list[dict[str, Any]]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def setting(record: Record) -> str:
    """The attack's settings as ``k=v`` text (``-`` for none)."""
    return _label("", record["cell"]["attack_options"]).lstrip("-") or "-"


def sanitizer(record: Record) -> str:
    """The sanitizer with its settings (``none`` for none)."""
    cell = record["cell"]
    return _label(cell["sanitizer"], cell["sanitizer_options"])


def ok(records: Iterable[Record]) -> list[Record]:
    """The records that finished."""
    return [r for r in records if r.get("status") == "ok"]


def group(
    records: Iterable[Record], key: Callable[[Record], tuple[Any, ...]]
) -> dict[tuple[Any, ...], list[Record]]:
    """Records grouped by ``key``, in first-seen order."""
    out: dict[tuple[Any, ...], list[Record]] = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


def values(rs: Sequence[Record], get: Callable[[Record], Any]) -> list[float]:
    """The finite numbers ``get`` finds in ``rs``."""
    out = []
    for r in rs:
        v = get(r)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def mean(rs: Sequence[Record], get: Callable[[Record], Any]) -> float | None:
    """Mean of what ``get`` finds (``None`` if nothing)."""
    v = values(rs, get)
    return statistics.fmean(v) if v else None


def fmt(
    rs: Sequence[Record],
    get: Callable[[Record], Any],
    *,
    scale: float = 1.0,
    digits: int = 1,
    signed: bool = False,
) -> str:
    """``mean ± sd`` of ``get`` over ``rs`` (just the mean for one value; ``-`` for none)."""
    v = [x * scale for x in values(rs, get)]
    if not v:
        return "-"
    sign = "+" if signed else ""
    text = f"{statistics.fmean(v):{sign}.{digits}f}"
    if len(v) > 1:
        text += f" ± {statistics.stdev(v):.{digits}f}"
    return text


def rec(key: str) -> Callable[[Record], Any]:
    """Getter of a recovery score."""
    return lambda r: (r.get("recovery") or {}).get(key)


def att(key: str) -> Callable[[Record], Any]:
    """Getter of an attack fact."""
    return lambda r: (r.get("attack") or {}).get(key)


def acc(r: Record) -> Any:
    """Getter of the test accuracy."""
    return r.get("test_accuracy")


def delta(r: Record) -> Any:
    """Getter of the accuracy change against the honest model, in points."""
    return r.get("delta_points")


def recovered_fraction(rs: Sequence[Record]) -> str:
    """How many seeds still decoded a secret."""
    flags = [bool((r.get("recovery") or {}).get("recovered")) for r in rs]
    return f"{sum(flags)}/{len(flags)}"


def quality(rs: Sequence[Record]) -> str:
    """MAPE (images) or word precision/recall (text) of what came back."""
    if not any((r.get("recovery") or {}).get("recovered") for r in rs):
        return "gone"
    if values(rs, rec("mape")):
        return f"MAPE {fmt(rs, rec('mape'))}"
    p = fmt(rs, rec("word_precision"), scale=100, digits=0)
    return f"P {p}% / R {fmt(rs, rec('word_recall'), scale=100, digits=0)}%"


def baselines(records: Iterable[Record]) -> Table:
    """Datasets, models and honest accuracy (the paper's Table of datasets)."""
    honest = [
        r
        for r in ok(records)
        if r["cell"]["attack"] == "honest" and r["cell"]["sanitizer"] == "none"
    ]
    rows, vals = [], []
    for (ds,), rs in group(honest, lambda r: (r["cell"]["dataset"],)).items():
        first = rs[0]
        train = first["cell"].get("train", {})
        row = [
            ds,
            str(first.get("model", "-")),
            f"{first.get('n_parameters') or 0:,}",
            str(train.get("train_limit", "all")),
            str(train.get("epochs", "recipe")),
            fmt(rs, acc, scale=100, digits=2),
            PAPER_BASELINES.get(ds, "-"),
        ]
        rows.append(row)
        vals.append(
            {
                "dataset": ds,
                "model": first.get("model"),
                "n_parameters": first.get("n_parameters"),
                "train_limit": train.get("train_limit"),
                "epochs": train.get("epochs"),
                "test_accuracy": mean(rs, acc),
                "seeds": len(rs),
                "paper": PAPER_BASELINES.get(ds),
            }
        )
    header = (
        "dataset",
        "model",
        "parameters",
        "train items",
        "epochs",
        "honest test acc %",
        "paper (≈)",
    )
    return Table("baselines", "Datasets and honest baselines", header, rows, vals)


def attack_table(
    records: Iterable[Record], attack: str, *, title: str, setting_name: str, note: str = ""
) -> Table:
    """One attack's results across its settings, without sanitizer (accuracy, δ, recovery)."""
    mine = [
        r for r in ok(records) if r["cell"]["attack"] == attack and r["cell"]["sanitizer"] == "none"
    ]
    rows, vals = [], []
    for (ds, st), rs in group(mine, lambda r: (r["cell"]["dataset"], setting(r))).items():
        row = [ds, st, fmt(rs, rec("items"), digits=0), fmt(rs, att("bits_encoded"), digits=0)]
        if attack == "capacity":
            row += [
                fmt(rs, att("m_over_n"), digits=2),
                fmt(rs, att("synthetic_accuracy"), scale=100),
            ]
        row += [
            fmt(rs, acc, scale=100, digits=2),
            fmt(rs, delta, digits=2, signed=True),
            quality(rs),
        ]
        if attack != "lsb":
            row.append(fmt(rs, rec("ssim"), digits=3))
        rows.append(row)
        vals.append({
            "dataset": ds, "setting": st, "seeds": len(rs), "items": mean(rs, rec("items")),
            "bits_encoded": mean(rs, att("bits_encoded")), "m_over_n": mean(rs, att("m_over_n")),
            "synthetic_accuracy": mean(rs, att("synthetic_accuracy")),
            "test_accuracy": mean(rs, acc),
            "delta_points": mean(rs, delta), "mape": mean(rs, rec("mape")),
            "ssim": mean(rs, rec("ssim")), "word_precision": mean(rs, rec("word_precision")),
            "word_recall": mean(rs, rec("word_recall")),
        })  # fmt: skip
    header: tuple[str, ...] = ("dataset", setting_name, "items", "bits encoded")
    if attack == "capacity":
        header += ("m/n", "synthetic labels learned %")
    header += ("test acc %", "δ (points)", "recovered")
    if attack != "lsb":
        header += ("SSIM",)
    return Table(attack, title, header, rows, vals, note)


def matrix(records: Iterable[Record], dataset: str) -> Table:
    """The countermeasures matrix of one dataset: accuracy / what the key still recovers."""
    mine = [r for r in ok(records) if r["cell"]["dataset"] == dataset]
    sans = list(dict.fromkeys(sanitizer(r) for r in mine))
    rows, vals = [], []
    for (attack, st), rs in group(mine, lambda r: (r["cell"]["attack"], setting(r))).items():
        row = [f"{attack} {st}" if st != "-" else attack]
        for san in sans:
            cell = [r for r in rs if sanitizer(r) == san]
            if not cell:
                row.append("")
                continue
            text = fmt(cell, acc, scale=100)
            if attack != "honest":
                text += " / " + quality(cell)
            row.append(text)
            vals.append({
                "dataset": dataset, "attack": attack, "setting": st, "sanitizer": san,
                "test_accuracy": mean(cell, acc),
                "recovered": recovered_fraction(cell) if attack != "honest" else None,
                "mape": mean(cell, rec("mape")), "word_recall": mean(cell, rec("word_recall")),
                "scan_flagged": sum(bool((r.get("scan") or {}).get("flagged_by")) for r in cell),
            })  # fmt: skip
        rows.append(row)
    return Table(
        f"countermeasures-{dataset}",
        f"Countermeasures on {dataset}: test accuracy % / what the key still recovers",
        ("model", *sans),
        rows,
        vals,
    )


def scan_table(records: Iterable[Record]) -> Table:
    """The scanner's verdicts on the released (unsanitized) models."""
    mine = [r for r in ok(records) if r["cell"]["sanitizer"] == "none" and r.get("scan")]
    rows, vals = [], []
    for (ds, attack, st), rs in group(
        mine, lambda r: (r["cell"]["dataset"], r["cell"]["attack"], setting(r))
    ).items():
        flagged = sum(r["scan"]["verdict"] == "suspicious" for r in rs)
        by = sorted({d for r in rs for d in r["scan"]["flagged_by"]})
        p_values = [min(ps.values()) for r in rs if (ps := r["scan"].get("p_values"))]
        probe = [r["scan"]["noise_probe_p"] for r in rs if "noise_probe_p" in r["scan"]]
        smallest = f"{max(p_values):.2g}" if p_values else "-"
        shown_probe = f"{max(probe):.2g}" if probe else "-"
        rows.append(
            [ds, attack, st, f"{flagged}/{len(rs)}", ", ".join(by) or "-", smallest, shown_probe]
        )
        vals.append(
            {
                "dataset": ds,
                "attack": attack,
                "setting": st,
                "flagged": flagged,
                "models": len(rs),
                "flagged_by": by,
                "smallest_p": max(p_values) if p_values else None,
                "noise_probe_p": max(probe) if probe else None,
            }
        )
    return Table(
        "scan",
        "Scanner verdicts on the released models: flagged at the family-wise alpha "
        "(smallest Holm p-value of any detector, the largest over seeds); the opt-in noise "
        "probe against the honest reference beside it",
        (
            "dataset",
            "training code",
            "setting",
            "flagged",
            "flagged by",
            "smallest p",
            "noise probe p",
        ),
        rows,
        vals,
    )


def all_tables(records: list[Record]) -> list[Table]:
    """Every table of the report, in the paper's order."""
    datasets = list(dict.fromkeys(r["cell"]["dataset"] for r in ok(records)))
    tables = [
        baselines(records),
        attack_table(
            records,
            "lsb",
            title="LSB encoding: accuracy vs low bits b overwritten",
            setting_name="setting",
        ),
        attack_table(
            records, "correlation", title="Correlated value encoding", setting_name="setting"
        ),
        attack_table(records, "sign", title="Sign encoding", setting_name="setting"),
        attack_table(
            records,
            "capacity",
            title="Capacity abuse (black-box, label queries only)",
            setting_name="setting",
        ),
    ]
    tables += [matrix(records, ds) for ds in datasets]
    scans = scan_table(records)
    if scans.rows:
        tables.append(scans)
    return [t for t in tables if t.rows]
