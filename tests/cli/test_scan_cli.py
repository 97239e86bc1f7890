"""``covertml scan`` on honest and attacked digits models: verdicts and exit codes."""

from __future__ import annotations

import json

import pytest

from covertml.cli.main import main
from covertml.serve import BackgroundServer, app_from_file


def _train(out, *extra: str) -> None:
    try:
        main(["train", "-d", "digits", "-o", str(out), "--json", *extra])
    except SystemExit as exc:  # pragma: no cover - failure shows up in the tests
        assert not exc.code


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    _train(root / "honest", "--seed", "1")
    _train(root / "reference", "--seed", "2")
    _train(root / "correlation", "--seed", "3", "--attack", "correlation", "--lam", "3")
    _train(root / "capacity", "--seed", "4", "--attack", "capacity", "--ratio", "1")
    return {
        name: root / name / "model.safetensors"
        for name in ("honest", "reference", "correlation", "capacity")
    }


def _scan(cli, model, *extra):
    code, out, err = cli("scan", str(model), "--json", *extra)
    return code, (json.loads(out) if out.strip() else None), err


def _flagged(report) -> set[str]:
    return {d["detector"] for d in report["detectors"] if d["flagged"]}


def test_honest_model_scans_clean_with_exit_0(cli, models) -> None:
    code, report, err = _scan(
        cli, models["honest"], "-d", "digits", "--reference", str(models["reference"])
    )
    assert code == 0, (err, report and _flagged(report))
    assert report["verdict"] == "no findings" and not report["skipped"]


def test_correlation_model_is_flagged_by_the_owner_audit(cli, models) -> None:
    code, report, _ = _scan(cli, models["correlation"], "-d", "digits")
    assert code == 1 and report["verdict"] == "suspicious"
    assert "owner-correlation" in _flagged(report)
    top = next(d for d in report["detectors"] if d["detector"] == "owner-correlation")
    assert "weight" in top["findings"][0]["layer"]  # the window of carriers it matched in
    assert top["findings"][0]["p_value"] <= 1e-3 and top["findings"][0]["null"]


def test_capacity_model_is_flagged_by_the_probe_locally_and_over_http(cli, models) -> None:
    ref = ["--reference", str(models["reference"]), "--detector", "noise-probe"]
    code, report, _ = _scan(cli, models["capacity"], *ref)
    assert code == 1 and _flagged(report) == {"noise-probe"}
    with BackgroundServer(app_from_file(models["capacity"])) as server:
        code, remote, _ = _scan(cli, models["honest"], *ref, "--endpoint", server.url)
    # the file scanned is the honest one, but the probe asks the (abused) endpoint
    assert code == 1 and _flagged(remote) == {"noise-probe"}
    assert remote["detectors"][0]["findings"][0]["evidence"]["queries"] == 4000  # 2000 + copies


def test_scan_errors_exit_2_with_one_line(cli, models, tmp_path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(models["honest"].read_bytes()[:64])
    code, _, err = cli("scan", str(bad))
    assert code == 2 and "truncated" in err and err.strip().count("\n") == 0
    code, _, err = cli("scan", str(models["honest"]), "--detector", "owner-sign")
    assert code == 2 and "--dataset" in err
    code, _, err = cli("scan", str(models["honest"]), "--detector", "nosuch")
    assert code == 2 and "unknown detector" in err
