from __future__ import annotations

import json

import numpy as np
import pytest

from covertml.cli.main import main
from covertml.data import create_dataset


@pytest.fixture(scope="module")
def lsb_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lsb")
    argv = ["train", "-d", "digits", "-o", str(out), "--epochs", "3", "--attack", "lsb"]
    argv += ["--bits", "10", "--passphrase", "s3cret", "--n-secrets", "200", "--json"]
    try:
        main(argv)
    except SystemExit as exc:  # pragma: no cover - failure shows up in the tests
        assert not exc.code
    return out


def test_train_with_attack_writes_model_key_and_metrics(lsb_run) -> None:
    key = json.loads((lsb_run / "key.json").read_text())
    assert key["attack"] == "lsb" and key["settings"]["bits"] == 10
    assert key["secret"] == {"kind": "image", "count": 200, "levels": 256, "image_shape": [8, 8]}
    metrics = json.loads((lsb_run / "metrics.json").read_text())
    assert metrics["attack"]["items"] == 200 and metrics["attack"]["encrypted"] is True
    assert "passphrase" not in json.dumps(metrics)


def test_extract_recovers_and_scores_exactly(cli, lsb_run, tmp_path) -> None:
    out = tmp_path / "x"
    model = str(lsb_run / "model.safetensors")
    key = str(lsb_run / "key.json")
    code, stdout, err = cli(
        "extract", model, "--key", key, "-o", str(out), "-d", "digits", "--json"
    )
    assert code == 0, err
    images = np.load(out / "images.npz")["images"]
    truth = create_dataset("digits").train.x[:200, :, :, 0]
    assert images.dtype == np.uint8 and np.array_equal(images, truth)
    scores = json.loads(stdout)["scores"]
    assert scores["mape"] == 0 and scores["exact_symbols"] == 1.0
    assert (out / "original_vs_recovered.png").stat().st_size > 0


def test_wrong_passphrase_and_bad_key_are_one_line_errors(cli, lsb_run, tmp_path) -> None:
    key = json.loads((lsb_run / "key.json").read_text())
    key["settings"]["passphrase"] = "guess"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(key))
    model = str(lsb_run / "model.safetensors")
    code, _, err = cli("extract", model, "--key", str(wrong), "-o", str(tmp_path / "o"))
    assert code == 2 and "wrong passphrase" in err and err.strip().count("\n") == 0
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = cli("extract", model, "--key", str(broken), "-o", str(tmp_path / "o"))
    assert code == 2 and "malformed" in err
    code, _, err = cli("extract", model, "--key", str(tmp_path / "none.json"))
    assert code == 2 and "does not exist" in err


def test_key_for_another_architecture_is_refused(cli, lsb_run, tmp_path) -> None:
    other = tmp_path / "other"
    argv = ["train", "-d", "digits", "-o", str(other), "--epochs", "1"]
    assert cli(*argv, "--model-arg", "hidden=[32]", "--json")[0] == 0
    model, key = str(other / "model.safetensors"), str(lsb_run / "key.json")
    code, _, err = cli("extract", model, "--key", key, "-o", str(tmp_path / "o"))
    assert code == 2 and "carrier" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--attack", "lsb", "--bits", "40"], "1 to 31"),
        (["--attack", "sign", "--bits", "4"], "has no option 'bits'"),
        (["--attack", "sign", "--n-secrets", "5000"], "use --n-secrets"),
        (["--attack", "lbs"], "unknown attack 'lbs'"),
        (["--bits", "4"], "without --attack"),
    ],
)
def test_bad_attack_options(cli, tmp_path, argv, needle) -> None:
    code, _, err = cli("train", "-d", "digits", "-o", str(tmp_path / "r"), *argv)
    assert code == 2 and needle in err, err
