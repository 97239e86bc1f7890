from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest


def test_train_then_eval_writes_model_and_metrics(cli, tmp_path) -> None:
    out = tmp_path / "run"
    code, _, err = cli("train", "-d", "digits", "-o", str(out), "--epochs", "8", "--json")
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["name"] == "mlp"
    assert len(metrics["history"]) == 8
    assert metrics["test_accuracy"] > 0.9
    code, stdout, _ = cli("eval", str(out / "model.safetensors"), "-d", "digits", "--json")
    assert code == 0
    assert json.loads(stdout)["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_train_refuses_to_overwrite_results(cli, tmp_path) -> None:
    out = tmp_path / "run"
    assert cli("train", "-d", "digits", "-o", str(out), "--epochs", "1", "--json")[0] == 0
    before = (out / "model.safetensors").read_bytes()
    code, _, err = cli("train", "-d", "digits", "-o", str(out), "--epochs", "1")
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert (out / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "-d", "digitz", "-o", "x"], "unknown dataset 'digitz' (did you mean 'digits'?)"),
        (["train", "-d", "digits", "-m", "resnet33", "-o", "x"], "unknown model 'resnet33'"),
        (["train", "-d", "digits", "-m", "logreg", "-o", "x"], "takes text input"),
        (["train", "-d", "digits", "--model-arg", "oops", "-o", "x"], "KEY=VALUE"),
        (["eval", "missing.safetensors", "-d", "digits"], "does not exist"),
        (["train", "-d", "cifar10", "--data-dir", "/nowhere", "-o", "x"], "--data-dir"),
        (["train", "-d", "digits", "--schedule", "cosnie", "-o", "x"], "use constant, step or"),
        (["train", "-d", "digits", "--optimizer", "rmsprop", "-o", "x"], "use sgd or adam"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(cli, argv, needle) -> None:
    code, _, err = cli(*argv)
    assert code == 2
    assert needle in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_eval_refuses_a_dataset_of_another_shape(cli, tmp_path) -> None:
    from covertml.models import create_model, save_model

    path = save_model(
        create_model("mlp", input_shape=(1, 4, 4), num_classes=10), tmp_path / "m.safetensors"
    )
    code, _, err = cli("eval", str(path), "-d", "digits")
    assert code == 2 and "takes input (1, 4, 4)" in err


def test_corrupt_model_file_is_one_line(cli, tmp_path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
    code, _, err = cli("eval", str(bad), "-d", "digits")
    assert code == 2 and "truncated" in err and "\n" not in err.strip()


def test_datasets_lists_every_registered_dataset(cli, tmp_path) -> None:
    from covertml.data import list_datasets

    code, out, _ = cli("datasets", "--data-dir", str(tmp_path), "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == set(list_datasets())
    assert rows["digits"]["found"] is True
    assert rows["cifar10"]["found"] is False
    assert rows["cifar10"]["location"].startswith(str(tmp_path))


def test_help_everywhere_and_choices_come_from_registries() -> None:
    from typer.testing import CliRunner

    from covertml.cli.main import app
    from covertml.data import list_datasets
    from covertml.models import list_models

    # the installed console entry point works in a fresh process
    exe = [sys.executable, "-m", "covertml.cli.main", "--help"]
    top = subprocess.run(exe, capture_output=True, text=True, check=True).stdout
    runner = CliRunner()
    for command in ("train", "eval", "datasets", "demo", "models"):
        assert command in top
        res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "400"})
        assert res.exit_code == 0, command
        assert "Usage" in res.output
    train_help = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).output
    for name in list_datasets() + list_models():
        assert name in train_help


def test_demo_runs_every_attack_and_ends_with_summary_and_report(cli, tmp_path) -> None:
    out = tmp_path / "demo"
    code, text, err = cli("demo", "--out", str(out), "--epochs", "4")
    assert code == 0, err
    assert "demo summary" in text and "report:" in text
    assert (out / "index.html").is_file() and (out / "results.csv").is_file()
    records = {r["id"]: r for r in json.loads((out / "results.json").read_text())}
    assert all(r["status"] == "ok" for r in records.values())
    # honest + 3 LSB + correlation + sign + capacity models, each raw and under 2 sanitizers
    assert len(records) == 7 * 3
    lsb = records["digits/lsb-bits=16-passphrase=demo-passphrase/none/seed0"]
    assert lsb["recovery"]["mape"] == 0.0
    assert not records["digits/lsb-bits=8/lsb-randomize-bits=16/seed0"]["recovery"]["recovered"]
    cap = records["digits/capacity/none/seed0"]["recovery"]
    assert cap["via"] == "HTTP labels" and cap["endpoint"].startswith("http://127.0.0.1:")
    assert records["digits/honest/none/seed0"]["scan"]["verdict"] in ("no findings", "suspicious")
    assert "gone" in text and "kept" in text  # the sanitizer columns of the summary
    # a second demo replaces its own earlier run, but never a folder that is not one
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, _, err = cli("demo", "--out", str(other))
    assert code == 2 and "not a covertml run folder" in err
    assert (other / "notes.txt").read_text() == "keep me"


def test_train_schedule_option_sets_the_learning_rate_curve(cli, tmp_path) -> None:
    out = tmp_path / "cos"
    argv = ["train", "-d", "digits", "-o", str(out), "--epochs", "4", "--lr", "0.01"]
    code, _, err = cli(*argv, "--schedule", "cosine", "--json")
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["schedule"] == "cosine"
    # epoch e (0-based) trains at 0.01 * (1 + cos(pi * e / 4)) / 2
    expected = [0.01 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert [h["lr"] for h in metrics["history"]] == pytest.approx(expected)
