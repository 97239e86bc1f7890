"""Every attack runs end to end from the CLI on every real dataset (tiny subsets)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from covertml.cli.main import main

pytestmark = [pytest.mark.data, pytest.mark.slow]

ARCHIVES = {
    "cifar10": "cifar10/cifar10_jpg.tar.gz",
    "lfw-gender": "lfw/lfw_crops_125x94.tar.gz",
    "lfw-identity": "lfw/lfw_crops_125x94.tar.gz",
    "20news": "20news-bydate/20news-bydate.tar.gz",
    "imdb": "imdb/aclImdb_labelled.tar.gz",
}
ATTACKS = {
    "lsb": ["--bits", "16"],
    "correlation": ["--lam", "3"],
    "sign": ["--lam", "50"],
    # a smoke run of one epoch: not trained on until the synthetic labels are learned
    "capacity": ["--n-secrets", "1", "--bits-per-pixel", "2", "--attack-opt", "learn_to=0"],
}


def data_dir() -> Path:
    env = os.environ.get("COVERTML_DATA")
    if not env:
        pytest.skip("COVERTML_DATA is not set")
    return Path(env)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("dataset", sorted(ARCHIVES))
def test_attack_cli_on_real_dataset(dataset: str, attack: str, tmp_path: Path) -> None:
    root = data_dir()
    if not (root / ARCHIVES[dataset]).is_file():
        pytest.skip(f"{ARCHIVES[dataset]} missing")
    run = tmp_path / "run"
    argv = ["train", "-d", dataset, "-o", str(run), "--epochs", "1", "--train-limit", "120"]
    argv += ["--test-limit", "50", "--data-dir", str(root), "--json", "--attack", attack]
    argv += ATTACKS[attack]
    if dataset == "lfw-gender" and attack == "capacity":  # 1 bit per label: keep m small
        argv += ["--bits-per-pixel", "1"]
    if dataset.startswith("lfw"):
        argv += ["--model-arg", "hidden=32"]
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code
    out = tmp_path / "x"
    try:
        main(
            [
                "extract",
                str(run / "model.safetensors"),
                "--key",
                str(run / "key.json"),
                "-o",
                str(out),
                "-d",
                dataset,
                "--data-dir",
                str(root),
                "--json",
            ]
        )
    except SystemExit as exc:
        assert not exc.code
    scores = json.loads((out / "metrics.json").read_text())["scores"]
    assert scores["items"] >= 1
    if attack == "lsb":  # lossless: every symbol back exactly
        assert scores["exact_symbols"] == 1.0
    if dataset in ("20news", "imdb"):
        assert (out / "documents.jsonl").is_file() and scores["word_precision"] is not None
    else:
        assert (out / "images.npz").is_file() and scores["mape"] is not None
