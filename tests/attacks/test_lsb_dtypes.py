"""The LSB attack in float16 and bfloat16 releases, checked on the bits of the saved file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from covertml.attacks import payload as pl
from covertml.attacks.lsb import LSBAttack
from covertml.data import create_dataset
from covertml.defenses import create_sanitizer
from covertml.defenses.files import sanitize_file
from covertml.errors import ConfigError
from covertml.models import create_model_for, load_model, save_model

MANTISSA = {"float16": 10, "bfloat16": 7}
TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


def u16(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().view(torch.int16).numpy().astype(np.int64) & 0xFFFF


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_payload_lives_in_the_low_bits_of_the_release_words(dtype, digits, tmp_path) -> None:
    bits = MANTISSA[dtype]
    torch.manual_seed(0)
    model = create_model_for(digits)
    attack = LSBAttack(bits=bits, dtype=dtype)
    plan = attack.plan(model, digits, n_secrets=30)
    assert plan.release_dtype == dtype and plan.key.settings["dtype"] == dtype
    rounded = {k: v.to(TORCH[dtype]) for k, v in model.state_dict().items()}  # done by hand
    for step in plan.post_steps:
        step(model)
    path = save_model(model, tmp_path / "m.safetensors", dtype=dtype)
    saved = load_file(path)
    low = (1 << bits) - 1
    changed = 0
    for name, before in rounded.items():
        after = saved[name]
        assert after.dtype == TORCH[dtype], name
        # sign, exponent and the high mantissa bits are those of the rounded model
        assert not ((u16(before) ^ u16(after)) & ~low).any(), name
        changed += int((u16(before) != u16(after)).sum())
    assert changed > 0
    # the model in memory holds exactly the released values
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name].to(value.dtype)), name
    # decoded from the file, loaded into the float32 architecture
    recovered = LSBAttack.decode(load_model(path).model, plan.key)
    assert np.array_equal(recovered.values, plan.secret.values)


def test_a_bfloat16_release_loses_its_payload_to_the_default_sanitizer(digits, tmp_path) -> None:
    model = create_model_for(digits)
    plan = LSBAttack(bits=7, dtype="bfloat16").plan(model, digits, n_secrets=30)
    for step in plan.post_steps:
        step(model)
    path = save_model(model, tmp_path / "m.safetensors", dtype="bfloat16")
    clean = tmp_path / "clean.safetensors"
    result = sanitize_file(path, clean, create_sanitizer("lsb-randomize"))
    assert result.bits == {"bfloat16": 2}
    with pytest.raises(pl.PayloadError):
        LSBAttack.decode(load_model(clean).model, plan.key)


@pytest.mark.parametrize(("dtype", "bits"), [("float16", 11), ("bfloat16", 8)])
def test_bits_past_the_mantissa_are_refused(dtype, bits) -> None:
    with pytest.raises(ConfigError, match=f"{MANTISSA[dtype]}-bit mantissa"):
        LSBAttack(bits=bits, dtype=dtype)
    with pytest.raises(ConfigError, match="unknown release dtype"):
        LSBAttack(bits=4, dtype="float8")


def test_train_cli_writes_a_bfloat16_release(cli, tmp_path) -> None:
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "-d", "digits", "-o", str(out), "--epochs", "1", "--attack", "lsb",
        "--bits", "6", "--attack-opt", "dtype=bfloat16", "--n-secrets", "20", "--json",
    )  # fmt: skip
    assert code == 0, err
    saved = load_file(out / "model.safetensors")
    assert {t.dtype for t in saved.values() if t.is_floating_point()} == {torch.bfloat16}
    assert json.loads((out / "key.json").read_text())["settings"]["dtype"] == "bfloat16"
    xo = tmp_path / "x"
    code, stdout, err = cli(
        "extract", str(out / "model.safetensors"), "--key", str(out / "key.json"),
        "-o", str(xo), "-d", "digits", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["scores"]["exact_symbols"] == 1.0
