"""``covertml sanitize``: new file, input untouched, payload destroyed, clear errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from covertml.cli.main import main


@pytest.fixture(scope="module")
def lsb_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("lsb")
    argv = ["train", "-d", "digits", "-o", str(out), "--epochs", "3", "--attack", "lsb"]
    argv += ["--bits", "12", "--n-secrets", "100", "--json"]
    try:
        main(argv)
    except SystemExit as exc:  # pragma: no cover - failure shows up in the tests
        assert not exc.code
    return out


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lsb_randomize_destroys_the_payload_and_keeps_accuracy(cli, lsb_model, tmp_path) -> None:
    src = lsb_model / "model.safetensors"
    before = _digest(src)
    clean = tmp_path / "clean.safetensors"
    code, stdout, err = cli("sanitize", str(src), str(clean), "-m", "lsb-randomize", "--json")
    assert code == 0, err
    assert _digest(src) == before
    report = json.loads(stdout)
    assert report["values_changed"] > 0.99 * report["values"]
    # the high 16 bits of every float are untouched
    a, b = load_file(src), load_file(clean)
    for k in a:
        if a[k].dtype == np.float32:
            assert np.array_equal(a[k].view("<u4") >> 16, b[k].view("<u4") >> 16)
    code, _, err = cli(
        "extract", str(clean), "--key", str(lsb_model / "key.json"), "-o", str(tmp_path / "x")
    )
    assert code == 2 and err.strip().count("\n") == 0  # the payload no longer decodes
    metrics = json.loads((lsb_model / "metrics.json").read_text())
    code, stdout, _ = cli("eval", str(clean), "-d", "digits", "--json")
    assert code == 0
    assert json.loads(stdout)["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=0.01)
    history = json.loads(_metadata(clean)["sanitized"])
    assert history == [
        {
            "method": "lsb-randomize",
            "options": {"scope": None, "bits": None},
            "bits": {"float32": 16},
            "seed": 0,
        }
    ]


def _metadata(path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return dict(f.metadata())


def test_finetune_from_the_cli_needs_and_uses_the_owner_data(cli, lsb_model, tmp_path) -> None:
    src = str(lsb_model / "model.safetensors")
    code, _, err = cli("sanitize", src, str(tmp_path / "f.safetensors"), "-m", "finetune")
    assert code == 2 and "--dataset" in err
    out = tmp_path / "f2.safetensors"
    code, stdout, err = cli(
        "sanitize", src, str(out), "-m", "finetune", "--epochs", "1", "-d", "digits", "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["values_changed"] > 0
    code, stdout, _ = cli("eval", str(out), "-d", "digits", "--json")
    assert json.loads(stdout)["test_accuracy"] > 0.8


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["-m", "lsb-randomise"], "unknown sanitizer 'lsb-randomise'"),
        (["-m", "prune", "--percent", "150"], "percent must be in [0, 100)"),
        (["-m", "fp16", "--opt", "bits=3"], "has no option 'bits'"),
    ],
)
def test_bad_sanitize_requests_are_one_line(cli, lsb_model, tmp_path, extra, needle) -> None:
    code, _, err = cli(
        "sanitize", str(lsb_model / "model.safetensors"), str(tmp_path / "o"), *extra
    )
    assert code == 2 and needle in err and err.strip().count("\n") == 0


def test_sanitize_never_overwrites(cli, lsb_model, tmp_path) -> None:
    src = lsb_model / "model.safetensors"
    code, _, err = cli("sanitize", str(src), str(src), "-m", "fp16")
    assert code == 2 and "never overwrites its input" in err
    taken = tmp_path / "taken.safetensors"
    taken.write_bytes(b"keep me")
    code, _, err = cli("sanitize", str(src), str(taken), "-m", "fp16")
    assert code == 2 and "--overwrite" in err and taken.read_bytes() == b"keep me"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(src.read_bytes()[:100])
    code, _, err = cli("sanitize", str(bad), str(tmp_path / "o2"), "-m", "fp16")
    assert code == 2 and "truncated" in err and not (tmp_path / "o2").exists()
