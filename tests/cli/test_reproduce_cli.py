"""``covertml reproduce`` and ``covertml report`` from the command line."""

from __future__ import annotations

import json

from covertml.cli.reproduce_cmd import format_eta

GRID = """
name = "cli"
[datasets.digits]
epochs = 2
train_limit = 300
test_limit = 100
[attacks]
sign = [{lam = 10.0}]
[sanitizers]
none = [{}]
fp16 = [{}]
"""


def test_reproduce_records_cells_shows_progress_and_writes_the_report(cli, tmp_path) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    out = tmp_path / "run"
    code, text, err = cli("reproduce", "-c", str(grid), "-o", str(out))
    assert code == 0, err
    flat = " ".join(text.split())
    assert "4/4 cells recorded (0 from before), 0 failed" in flat
    assert "done · " in flat and " running · " in flat and " left · ETA " in flat
    assert "report:" in flat and (out / "index.html").is_file()
    assert len(json.loads((out / "results.json").read_text())) == 4
    code, text, _ = cli("reproduce", "-c", str(grid), "-o", str(out), "--no-report")
    assert code == 0 and "4/4 cells recorded (4 from before)" in " ".join(text.split())


def test_bad_grid_and_bad_run_folder_are_one_line_errors(cli, tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[datasets.digitz]\n")
    code, _, err = cli("reproduce", "-c", str(bad), "-o", str(tmp_path / "x"))
    assert code == 2 and "digitz" in err and "Traceback" not in err
    code, _, err = cli("reproduce", "-c", str(tmp_path / "missing.toml"), "-o", str(tmp_path))
    assert code == 2 and "does not exist" in err
    good = tmp_path / "good.toml"
    good.write_text(GRID)
    code, _, err = cli("reproduce", "-c", str(good), "-o", str(tmp_path / "y"), "--jobs", "0")
    assert code == 2 and "--jobs must be at least 1" in err
    code, _, err = cli("report", str(tmp_path / "empty"))
    assert code == 2 and "no results.json" in err and len(err.strip().splitlines()) == 1


def test_eta_format() -> None:
    assert format_eta(59.4) == "0m59s"
    assert format_eta(3 * 3600 + 61) == "3h01m"
    assert format_eta(None) == "?"
