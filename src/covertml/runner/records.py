"""Cell records on disk: reading them back, checking them, and the run's JSON and CSV tables.

Each finished cell is ``cells/<cell>/record.json``. The run's tables are rebuilt from the
records after every cell (atomically), so they are always complete up to the last cell:

- ``results.json``: every record, in grid order, with the honest baseline and delta added;
- ``results.csv``: one flat row per cell (the columns of :data:`CSV_COLUMNS`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from covertml.errors import ConfigError
from covertml.paths import atomic_write_text
from covertml.runner.config import Cell, _label
from covertml.runner.jobs import safe_path

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "id", "dataset", "attack", "setting", "sanitizer", "seed", "status", "model",
    "n_parameters", "test_accuracy", "baseline_accuracy", "delta_points", "items",
    "bits_encoded", "m_over_n", "synthetic_accuracy", "recovered", "mape", "ssim", "psnr",
    "bit_error_rate", "exact_symbols", "word_precision", "word_recall", "queries",
    "scan_verdict", "flagged_by", "train_seconds", "seconds", "error",
)  # fmt: skip


#: Columns copied as they are from a record's ``recovery``.
RECOVERY_COLUMNS = (
    "mape", "ssim", "psnr", "bit_error_rate", "exact_symbols", "word_precision", "word_recall",
    "queries",
)  # fmt: skip


def record_path(run_dir: Path, cell_id: str) -> Path:
    """Where cell ``cell_id``'s record lives."""
    return run_dir / "cells" / safe_path(cell_id) / "record.json"


def _settings(cell: Any) -> Any:
    """What a record's results depend on: its cell, less the device it ran on.

    A run begun on the CPU may be resumed on a GPU.
    """
    if not isinstance(cell, dict) or not isinstance(cell.get("train"), dict):
        return cell
    return {**cell, "train": {k: v for k, v in cell["train"].items() if k != "device"}}


def load_records(run_dir: Path, cells: Iterable[Cell]) -> dict[str, dict[str, Any]]:
    """The records of ``cells`` already in ``run_dir`` (unreadable ones are ignored).

    Raises:
        ConfigError: a record was made with other settings than the grid now asks for.
    """
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        path = record_path(run_dir, cell.id)
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("ignoring unreadable record %s (the cell runs again)", path)
            continue
        if _settings(record.get("cell")) != _settings(cell.to_dict()):
            raise ConfigError(
                f"{run_dir} holds cell {cell.id} recorded with other settings "
                f"({record.get('cell', {}).get('train')} vs {cell.train})",
                fix="use another --out folder, or delete that folder to start over",
            )
        out[cell.id] = record
    return out


def baseline_of(cell: dict[str, Any], records: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The honest, unsanitized record of the same dataset and seed."""
    honest_id = f"{cell['dataset']}/honest/none/seed{cell['seed']}"
    return records.get(honest_id)


def flat_row(record: dict[str, Any], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One CSV row for ``record`` (missing values are empty)."""
    cell = record["cell"]
    rec = record.get("recovery") or {}
    attack = record.get("attack") or {}
    scan = record.get("scan") or {}
    base = baseline_of(cell, records)
    acc = record.get("test_accuracy")
    base_acc = base.get("test_accuracy") if base else None
    row = {
        "id": record["id"],
        "dataset": cell["dataset"],
        "attack": cell["attack"],
        "setting": _label("", cell["attack_options"]).lstrip("-"),
        "sanitizer": _label(cell["sanitizer"], cell["sanitizer_options"]),
        "seed": cell["seed"],
        "status": record.get("status"),
        "model": record.get("model"),
        "n_parameters": record.get("n_parameters"),
        "test_accuracy": acc,
        "baseline_accuracy": base_acc,
        "delta_points": None if acc is None or base_acc is None else 100 * (acc - base_acc),
        "items": rec.get("items", attack.get("items")),
        "bits_encoded": attack.get("bits_encoded"),
        "m_over_n": attack.get("m_over_n"),
        "synthetic_accuracy": attack.get("synthetic_accuracy"),
        "recovered": rec.get("recovered"),
        "scan_verdict": scan.get("verdict"),
        "flagged_by": " ".join(scan.get("flagged_by", [])) or None,
        "train_seconds": record.get("train_seconds"),
        "seconds": record.get("seconds"),
        "error": record.get("error") or rec.get("why"),
    }
    for k in RECOVERY_COLUMNS:
        row[k] = rec.get(k)
    return row


def write_tables(run_dir: Path, cells: list[Cell], records: dict[str, dict[str, Any]]) -> None:
    """Rewrites ``results.json`` and ``results.csv`` from the records (grid order)."""
    ordered = [records[c.id] for c in cells if c.id in records]
    rows = [flat_row(r, records) for r in ordered]
    enriched = [
        {**r, "baseline_accuracy": row["baseline_accuracy"], "delta_points": row["delta_points"]}
        for r, row in zip(ordered, rows, strict=True)
    ]
    atomic_write_text(run_dir / "results.json", json.dumps(enriched, indent=1, default=str) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in CSV_COLUMNS})
    atomic_write_text(run_dir / "results.csv", buf.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
