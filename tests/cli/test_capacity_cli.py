"""Capacity abuse from the command line: train, serve, extract locally and over HTTP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covertml.cli.main import main
from covertml.data import create_dataset
from covertml.serve import BackgroundServer, app_from_file


@pytest.fixture(scope="module")
def capacity_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("capacity")
    argv = ["train", "-d", "digits", "-o", str(out), "--attack", "capacity", "--n-secrets", "6"]
    try:
        main([*argv, "--json"])
    except SystemExit as exc:  # pragma: no cover - failure shows up in the tests
        assert not exc.code
    return out


def truth_floor(count: int) -> tuple[np.ndarray, float]:
    """The true first images (grayscale) and the best MAPE at 4 bits, computed here."""
    images = create_dataset("digits").train.x[:count, :, :, 0].astype(np.int64)
    centres = (images >> 4) * 16 + 8
    return images, float(np.abs(centres - images).mean())


def test_metrics_and_key_describe_the_synthetic_set(capacity_run) -> None:
    metrics = json.loads((capacity_run / "metrics.json").read_text())["attack"]
    key = json.loads((capacity_run / "key.json").read_text())
    assert key["attack"] == "capacity" and key["carriers"] is None
    assert metrics["items"] == 6 and metrics["bits_encoded"] == 6 * 64 * 4
    assert metrics["synthetic_inputs"] == key["settings"]["m"]
    assert metrics["m_over_n"] == pytest.approx(key["settings"]["m"] / 1437)


@pytest.mark.parametrize("through", ["file", "endpoint"])
def test_extract_reads_labels_only(cli, capacity_run, tmp_path, through) -> None:
    model = str(capacity_run / "model.safetensors")
    key = str(capacity_run / "key.json")
    out = tmp_path / "rec"
    args = ["extract", "--key", key, "-o", str(out), "-d", "digits", "--json"]
    if through == "file":
        code, stdout, err = cli(*args, model)
    else:
        with BackgroundServer(app_from_file(model)) as srv:
            code, stdout, err = cli(*args, "--endpoint", srv.url)
    assert code == 0, err
    result = json.loads(stdout)
    m = json.loads((capacity_run / "key.json").read_text())["settings"]["m"]
    assert result["queries"] == m
    images = np.load(out / "images.npz")["images"]
    truth, floor = truth_floor(6)
    assert images.shape == (6, 8, 8) and images.dtype == np.uint8
    assert np.abs(images.astype(np.int64) - truth).mean() <= floor + 1.0
    assert result["quantization_floor_mape"] == pytest.approx(floor)
    assert (out / "original_vs_recovered.png").exists()


def test_extract_errors_are_one_line(cli, capacity_run, tmp_path) -> None:
    key = str(capacity_run / "key.json")
    code, _, err = cli("extract", "--key", key, "--endpoint", "http://127.0.0.1:9")
    assert code == 2 and "cannot reach" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("extract", "--key", key)
    assert code == 2 and "either a model file or --endpoint" in err


def test_white_box_key_refuses_an_endpoint(cli, tmp_path) -> None:
    out = tmp_path / "sign"
    code, _, err = cli(
        "train", "-d", "digits", "-o", str(out), "--epochs", "1", "--attack", "sign", "--json"
    )
    assert code == 0, err
    code, _, err = cli(
        "extract", "--key", str(out / "key.json"), "--endpoint", "http://127.0.0.1:9"
    )
    assert code == 2 and "white-box" in err


def test_serve_rejects_bad_options(cli, capacity_run) -> None:
    model = str(capacity_run / "model.safetensors")
    code, _, err = cli("serve", model, "--port", "70000")
    assert code == 2 and "out of range" in err
    code, _, err = cli("serve", model, "--max-batch", "0")
    assert code == 2 and "max_batch" in err
    code, _, err = cli("serve", "missing.safetensors")
    assert code == 2 and "missing.safetensors" in err
