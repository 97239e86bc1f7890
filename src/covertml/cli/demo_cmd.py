"""``covertml demo``: every attack and two countermeasures on the embedded digits data.

The demo is a small grid run by the same runner as ``covertml reproduce`` (so it writes the
same records, tables and HTML report): an honest model, the three white-box attacks, capacity
abuse read back through a labels-only prediction API on loopback, two sanitizers and the
scanner. It ends with a summary table and the report's path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from covertml.cli.common import AmpOpt, DeviceOpt, console
from covertml.cli.reproduce_cmd import run_with_progress, write_report
from covertml.errors import ConfigError

#: The demo's grid (digits needs no data files). ``{epochs}`` and ``{seed}`` are filled in.
DEMO_GRID = """
name = "demo"
seeds = [{seed}]
scan = true          # every model scanned against an honest reference
oracle = "http"      # capacity abuse: labels from a prediction API on loopback

[datasets.digits]
{epochs}

[attacks]
lsb = [{{bits = 8}}, {{bits = 16, passphrase = "demo-passphrase"}}, {{bits = 23}}]
correlation = [{{}}]  # defaults: lam = "auto" steers the strength while training
sign = [{{}}]
capacity = [{{}}]     # defaults: a handful of whole items, Reed-Solomon, trained until learned

[sanitizers]
none = [{{}}]
lsb-randomize = [{{bits = 16}}]
int8 = [{{per = "channel"}}]
"""


def _fresh_out(out: Path) -> None:
    """Clears an earlier demo run in ``out``; refuses to touch a folder that is not one."""
    if not out.exists():
        return
    if not (out / "run.json").is_file() and any(out.iterdir()):
        raise ConfigError(
            f"{out} exists and is not a covertml run folder", fix="choose another --out folder"
        )
    shutil.rmtree(out)


def _name(r: dict[str, Any]) -> str:
    cell = r["cell"]
    opts = cell["attack_options"]
    text = " ".join(f"{k}={v:g}" for k, v in opts.items() if isinstance(v, (int, float)))
    if opts.get("passphrase"):
        text += " +AES"
    return f"{cell['attack']} {text}".strip()


def _after(records: list[dict[str, Any]], like: dict[str, Any], sanitizer: str) -> str:
    for r in records:
        cell = r["cell"]
        if cell["sanitizer"] == sanitizer and _name(r) == _name(like) and r.get("status") == "ok":
            rec = r.get("recovery") or {}
            acc = f"{100 * r['test_accuracy']:.1f}"
            if cell["attack"] == "honest":
                return acc
            if not rec.get("recovered"):
                return f"{acc} [green]gone[/]"
            return f"{acc} [red]kept[/]"
    return "-"


def summary_table(records: list[dict[str, Any]]) -> Table:
    """One row per model: accuracy, what the key recovers, the scan, the two sanitizers."""
    table = Table(title="demo summary: honest vs malicious training code (digits)")
    for col in (
        "model", "test acc % (δ)", "images stolen", "MAPE", "via", "scan",
        "+ lsb-randomize 16: acc, secret", "+ int8: acc, secret",
    ):  # fmt: skip
        table.add_column(col)
    for r in records:
        cell = r["cell"]
        if cell["sanitizer"] != "none" or r.get("status") != "ok":
            continue
        rec = r.get("recovery") or {}
        scan = r.get("scan") or {}
        flagged = scan.get("verdict") == "suspicious"
        via = {"model file": "file", "HTTP labels": "HTTP"}.get(rec.get("via", ""), "")
        if rec.get("queries"):
            via += f" {rec['queries']:,} q"
        delta = "" if cell["attack"] == "honest" else f" ({r.get('delta_points') or 0:+.1f})"
        table.add_row(
            _name(r),
            f"{100 * r['test_accuracy']:.1f}{delta}",
            str(rec.get("items", "")),
            "" if rec.get("mape") is None else f"{rec['mape']:.1f}",
            via,
            "[red]flagged[/]"
            if flagged
            else (
                f"[yellow]probe p={scan['noise_probe_p']:.1g}[/]"
                if scan.get("noise_probe_flagged")
                else "[green]clean[/]"
            ),
            _after(records, r, "lsb-randomize"),
            _after(records, r, "int8"),
        )
    return table


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("runs/demo"),
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: recipe).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: DeviceOpt = "auto",
    amp: AmpOpt = False,
) -> None:
    """Run the demo on the embedded digits data (no files needed), then open the report.

    Trains an honest model and one per attack (three white-box; capacity abuse read back
    through a labels-only prediction API it starts on loopback), extracts the hidden
    training images with the adversary's key, scans every model, applies two sanitizers
    (lsb-randomize, int8) and extracts again. Writes OUT/index.html.
    """
    import json
    import tempfile

    from covertml.runner import load_grid

    console.rule("[bold]covertml demo[/] -- digits (embedded, 1,437 train / 360 test 8x8 images)")
    _fresh_out(out)
    text = DEMO_GRID.format(epochs=f"epochs = {epochs}" if epochs else "", seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        grid_file = Path(tmp) / "demo.toml"
        grid_file.write_text(text, encoding="utf-8")
        load_grid(grid_file)  # validated before anything runs
        run_with_progress(grid_file, out, jobs=1, data_dir=None, device=device, amp=amp or None)
    records = json.loads((out / "results.json").read_text(encoding="utf-8"))
    console.print(summary_table(records))
    console.print(
        "MAPE: mean absolute pixel error (0-255) of the stolen images; q: label queries; "
        "scan: covertml scan against an honest reference"
    )
    console.print(
        "original (top) vs recovered (bottom) images: "
        f"{out}/cells/digits/*/none/seed{seed}/original_vs_recovered.png"
    )
    write_report(out)


def register(app: typer.Typer) -> None:
    """Adds the command to ``app``."""
    app.command("demo")(demo)
