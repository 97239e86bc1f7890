"""End-to-end white-box attacks on small models, scored against independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from covertml.attacks import (
    AttackKey,
    CarrierMap,
    LSBAttack,
    PayloadError,
    WrongKeyError,
    create_attack,
    decode_secret,
)
from covertml.attacks.bits import randomize_low_bits
from covertml.errors import ConfigError
from covertml.models import create_model_for, load_model, save_model
from covertml.training import TrainConfig, accuracy_on, seed_everything


def fresh(ds, name=None):
    seed_everything(0)
    return create_model_for(ds, name)


def test_carrier_map_takes_weight_tensors_in_order(digits) -> None:
    model = create_model_for(digits, "resnet", depth=8)
    cmap = CarrierMap.from_model(model)
    expected = [n for n, p in model.named_parameters() if p.dim() >= 2]
    assert list(cmap.names) == expected
    assert all("bn" not in n and "bias" not in n for n in cmap.names)
    every = CarrierMap.from_model(model, rule="all-float")
    assert any("running_mean" in n for n in every.names)
    assert cmap.size == sum(model.get_parameter(n).numel() for n in expected)


@pytest.mark.parametrize("compression", ["none", "zlib", "lzma", "png-gzip"])
def test_lsb_recovers_images_exactly_from_the_saved_file(digits, tmp_path, compression) -> None:
    model = fresh(digits)
    plan = LSBAttack(bits=12, compression=compression).plan(model, digits)
    for step in plan.post_steps:
        step(model)
    path = save_model(model, tmp_path / "m.safetensors")
    key = AttackKey.load(plan.key.save(tmp_path / "key.json"))
    recovered = decode_secret(load_model(path).model, key)
    assert np.array_equal(recovered.images(), digits.train.x[: plan.secret.count, :, :, 0])
    raw_capacity = CarrierMap.from_model(model).size * 12 // 8 // 64
    if compression == "none":
        assert plan.secret.count == (raw_capacity * 64 - 8) // 64
    elif compression != "png-gzip":  # (a PNG per 8x8 image costs more than it saves)
        assert plan.secret.count > raw_capacity  # compression carries more than raw bytes


def test_lsb_with_passphrase_and_wrong_key(digits) -> None:
    model = fresh(digits)
    plan = LSBAttack(bits=8, passphrase="hunter2").plan(model, digits, n_secrets=30)
    plan.post_steps[0](model)
    assert decode_secret(model, plan.key).count == 30
    wrong = AttackKey.from_dict(
        {**plan.key.to_dict(), "settings": {**plan.key.settings, "passphrase": "nope"}}
    )
    with pytest.raises(WrongKeyError):
        decode_secret(model, wrong)


def test_lsb_damage_is_reported_and_over_capacity_refused(digits) -> None:
    model = fresh(digits)
    plan = LSBAttack(bits=8, compression="zlib").plan(model, digits, n_secrets=50)
    plan.post_steps[0](model)
    cmap = plan.key.carriers
    assert cmap is not None
    cmap.write_numpy(model, randomize_low_bits(cmap.read_numpy(model), 8, seed=0))
    with pytest.raises(PayloadError):
        decode_secret(model, plan.key)
    with pytest.raises(ConfigError, match="payload bytes but the carriers hold"):
        LSBAttack(bits=1).plan(fresh(digits), digits, n_secrets=1000)


def test_lsb_accuracy_is_unchanged_at_moderate_bits(digits) -> None:
    model = fresh(digits)
    plan = LSBAttack(bits=16).plan(model, digits)
    trainer = plan.trainer(TrainConfig(epochs=15, lr=2e-3, batch_size=32))
    result = trainer.fit(model, digits.train, test_data=digits.test)
    before = result.history[-1].test_accuracy  # measured before the post step
    assert result.test_accuracy is not None and before is not None
    assert abs(result.test_accuracy - before) <= 0.01
    assert np.array_equal(decode_secret(model, plan.key).values, plan.secret.values)


def test_sign_encoding_sets_weight_signs_to_the_secret_bits(digits) -> None:
    model = fresh(digits)
    plan = create_attack("sign", lam=50.0).plan(model, digits)
    plan.trainer(TrainConfig(epochs=15, lr=2e-3, batch_size=32)).fit(model, digits.train)
    secret = plan.secret
    assert secret.count == CarrierMap.from_model(model).size // (64 * 8)
    truth = np.unpackbits(secret.images().reshape(-1))  # MSB-first bits of every pixel
    signs = CarrierMap.from_model(model).read_numpy(model)[: truth.size] > 0
    agreement = float(np.mean(signs == truth.astype(bool)))
    assert agreement > 0.95  # chance is 0.5; the full recipe reaches > 0.99 (bench)
    recovered = decode_secret(model, plan.key).images()
    assert np.mean(np.unpackbits(recovered.reshape(-1)) == truth) == pytest.approx(agreement)
    assert accuracy_on(model, digits.test) > 0.93


def test_correlation_encoding_recovers_recognizable_images(digits) -> None:
    model = fresh(digits)
    plan = create_attack("correlation", lam=5.0).plan(model, digits)
    plan.trainer(TrainConfig(epochs=15, lr=2e-3, batch_size=32)).fit(model, digits.train)
    original = plan.secret.images().astype(float)
    recovered = decode_secret(model, plan.key).images().astype(float)
    r = np.corrcoef(original.ravel(), recovered.ravel())[0, 1]
    assert r > 0.8
    assert np.mean(np.abs(original - recovered)) < 40


def test_correlation_polarity_comes_from_the_pilot_not_the_data(digits) -> None:
    model = fresh(digits)
    plan = create_attack("correlation", lam=5.0).plan(model, digits)
    plan.trainer(TrainConfig(epochs=6, lr=2e-3, batch_size=32)).fit(model, digits.train)
    first = decode_secret(model, plan.key).values
    cmap = plan.key.carriers
    assert cmap is not None
    cmap.write_numpy(model, -cmap.read_numpy(model))  # flip every carrier's sign
    assert np.array_equal(decode_secret(model, plan.key).values, first)
    # the key holds the secret's shape only, never its values
    text = json.dumps(plan.key.to_dict())
    assert len(text) < 5_000 and "values" not in plan.key.secret


def test_text_sign_encoding_recovers_words(toy_text) -> None:
    model = fresh(toy_text, "logreg")
    plan = create_attack("sign", lam=50.0, margin=0.01).plan(model, toy_text)
    plan.trainer(TrainConfig(epochs=40, lr=1e-2, batch_size=8)).fit(model, toy_text.train)
    recovered = decode_secret(model, plan.key)
    docs = plan.secret.documents()
    lengths = [len(toy_text.train.documents[i]) for i in range(len(docs) + 1)]
    assert sum(lengths[:-1]) <= 600 // 9 < sum(lengths)  # 600 carriers / 9 bits per token
    matches = sum(int(np.sum(a == b)) for a, b in zip(docs, recovered.documents(), strict=True))
    assert matches / plan.secret.values.size > 0.95


def test_unknown_attack_and_options_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="has no option 'bitz'"):
        create_attack("lsb", bitz=3)
    with pytest.raises(Exception, match="unknown attack 'lbs'"):
        create_attack("lbs")
    with pytest.raises(ConfigError, match="1 to 31"):
        LSBAttack(bits=40)


def test_released_file_carries_no_hint_of_the_attack(digits, tmp_path) -> None:
    from safetensors import safe_open

    honest, attacked = fresh(digits), fresh(digits)
    plan = LSBAttack(bits=16, passphrase="k").plan(attacked, digits)
    plan.post_steps[0](attacked)
    for model, name in ((honest, "h"), (attacked, "a")):
        path = save_model(model, tmp_path / f"{name}.safetensors", classes=digits.classes)
        with safe_open(str(path), framework="pt") as f:
            assert set(f.metadata()) == {"format", "architecture", "classes"}
            assert set(f.keys()) == set(model.state_dict())
    assert torch.equal(
        honest.state_dict()["net.1.bias"], attacked.state_dict()["net.1.bias"]
    )  # biases are not carriers
