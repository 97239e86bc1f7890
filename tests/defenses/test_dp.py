"""DP-SGD (opacus): epsilon reported, the target honoured, clear refusals."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("opacus")

from covertml.data import create_dataset
from covertml.defenses.dp import DPSGD
from covertml.errors import ConfigError
from covertml.models import create_model_for
from covertml.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def small():
    return create_dataset("digits", train_limit=400, test_limit=100)


def _spent(ds, **kw) -> dict[str, float]:
    dp = DPSGD(**kw)
    Trainer(TrainConfig(epochs=2, batch_size=50), privacy=dp).fit(create_model_for(ds), ds.train)
    return dp.spent()


def test_more_noise_spends_less_epsilon(small) -> None:
    low, high = _spent(small, noise_multiplier=0.8), _spent(small, noise_multiplier=2.0)
    assert 0 < high["epsilon"] < low["epsilon"]
    assert low["noise_multiplier"] == 0.8 and high["delta"] == 1e-5


def test_target_epsilon_is_met(small) -> None:
    spent = _spent(small, target_epsilon=3.0)
    assert spent["epsilon"] == pytest.approx(3.0, rel=0.05)
    assert spent["noise_multiplier"] > 0


def test_models_and_losses_dp_cannot_train_are_refused(small) -> None:
    cifar_like = create_model_for(small, "resnet")  # batch norm
    with pytest.raises(ConfigError, match="batch norm"):
        Trainer(TrainConfig(epochs=1), privacy=DPSGD()).fit(cifar_like, small.train)
    from covertml.attacks import create_attack

    model = create_model_for(small)
    plan = create_attack("sign").plan(model, small)
    trainer = plan.trainer(TrainConfig(epochs=1))
    trainer.privacy = DPSGD()
    with pytest.raises(ConfigError, match="loss terms"):
        trainer.fit(model, small.train)
    with pytest.raises(ConfigError, match="noise_multiplier >= 0"):
        DPSGD(max_grad_norm=0)


def test_train_cli_records_privacy_spent(cli, tmp_path) -> None:
    out = tmp_path / "dp"
    code, _, err = cli(
        "train",
        "-d",
        "digits",
        "-o",
        str(out),
        "--epochs",
        "2",
        "--train-limit",
        "300",
        "--dp-noise",
        "1.5",
        "--json",
    )
    assert code == 0, err
    privacy = json.loads((out / "metrics.json").read_text())["privacy"]
    assert privacy["epsilon"] > 0 and privacy["noise_multiplier"] == 1.5
