"""Sanitizers against independent numpy computations of what each one must do."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from covertml.defenses import create_sanitizer, list_sanitizers
from covertml.errors import ConfigError, UnknownNameError

finite_floats = arrays(
    np.float32,
    st.integers(1, 300),
    elements=st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_subnormal=False),
)


def _words(x: np.ndarray) -> np.ndarray:
    return np.frombuffer(x.astype("<f4").tobytes(), dtype="<u4")


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "conv.bias": torch.randn(8, generator=g),
        "bn.running_var": torch.rand(8, generator=g) + 0.5,
        "bn.num_batches_tracked": torch.tensor(17),
    }


@settings(max_examples=60, deadline=None)
@given(finite_floats, st.integers(1, 23), st.integers(0, 2**31))
def test_lsb_randomize_keeps_high_bits_and_scrambles_low_bits(x, bits, seed) -> None:
    out = create_sanitizer("lsb-randomize", bits=bits).apply({"w": torch.from_numpy(x)}, seed=seed)
    before, after = _words(x), _words(out["w"].numpy())
    assert np.array_equal(before >> bits, after >> bits)
    if x.size >= 200 and bits >= 8:
        low = after & ((1 << bits) - 1)
        assert (low != (before & ((1 << bits) - 1))).mean() > 0.9
        assert abs(low.mean() / ((1 << bits) - 1) - 0.5) < 0.1


@settings(max_examples=60, deadline=None)
@given(finite_floats, st.integers(1, 23))
def test_lsb_zero_clears_exactly_the_low_bits(x, bits) -> None:
    out = create_sanitizer("lsb-zero", bits=bits).apply({"w": torch.from_numpy(x)})["w"].numpy()
    expected = _words(x) & np.uint32(0xFFFFFFFF ^ ((1 << bits) - 1))
    assert np.array_equal(_words(out), expected)


def test_lsb_randomize_is_keyed_by_seed() -> None:
    w = {"w": torch.ones(4096)}
    s = create_sanitizer("lsb-randomize", bits=12)
    assert torch.equal(s.apply(w, seed=3)["w"], s.apply(w, seed=3)["w"])
    assert not torch.equal(s.apply(w, seed=3)["w"], s.apply(w, seed=4)["w"])


@settings(max_examples=60, deadline=None)
@given(finite_floats)
def test_fp16_and_bf16_match_reference_rounding(x) -> None:
    fp16 = create_sanitizer("fp16").apply({"w": torch.from_numpy(x)})["w"].numpy()
    clipped = np.clip(x, -65504, 65504)
    assert np.array_equal(fp16, clipped.astype(np.float16).astype(np.float32))
    bf16 = create_sanitizer("bf16").apply({"w": torch.from_numpy(x)})["w"].numpy()
    u = _words(x).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16  # round to nearest, ties to even
    assert np.array_equal(_words(bf16), rounded.astype(np.uint32))


@pytest.mark.parametrize("per", ["tensor", "channel"])
def test_int8_matches_symmetric_quantization(per) -> None:
    state = _state()
    out = create_sanitizer("int8", per=per).apply(state)
    w = state["conv.weight"].numpy().astype(np.float64)
    if per == "tensor":
        scale = np.abs(w).max() / 127
    else:
        scale = np.abs(w).reshape(8, -1).max(axis=1).reshape(8, 1, 1, 1) / 127
    expected = np.clip(np.round(w / scale), -127, 127) * scale
    np.testing.assert_allclose(out["conv.weight"].numpy(), expected, rtol=0, atol=1e-6)
    levels = np.unique(np.round(out["conv.weight"].numpy() / scale).astype(int))
    assert levels.min() >= -127 and levels.max() <= 127
    assert torch.equal(out["conv.bias"], state["conv.bias"])  # weights only by default
    assert torch.equal(out["bn.num_batches_tracked"], state["bn.num_batches_tracked"])


def test_prune_zeroes_the_smallest_magnitudes_per_tensor() -> None:
    state = _state()
    out = create_sanitizer("prune", percent=40.0).apply(state)["conv.weight"].numpy().ravel()
    w = state["conv.weight"].numpy().ravel()
    k = round(0.4 * w.size)
    smallest = np.argsort(np.abs(w), kind="stable")[:k]
    assert (out[smallest] == 0).all()
    keep = np.setdiff1d(np.arange(w.size), smallest)
    assert np.array_equal(out[keep], w[keep])


def test_noise_is_relative_to_each_tensor_std_and_scope_all_reaches_biases() -> None:
    g = torch.Generator().manual_seed(0)
    state = {"a.weight": 5 * torch.randn(200, 200, generator=g), "a.bias": torch.ones(200)}
    out = create_sanitizer("noise", sigma=0.2).apply(state, seed=1)
    ratio = float((out["a.weight"] - state["a.weight"]).std() / state["a.weight"].std())
    assert ratio == pytest.approx(0.2, rel=0.03)
    assert torch.equal(out["a.bias"], state["a.bias"])
    wide = create_sanitizer("noise", sigma=0.2, scope="all").apply(state, seed=1)
    assert torch.equal(wide["a.bias"], state["a.bias"])  # std 0: nothing to scale by
    state["a.bias"] = torch.randn(200, generator=g)
    wide = create_sanitizer("noise", sigma=0.2, scope="all").apply(state, seed=1)
    assert not torch.equal(wide["a.bias"], state["a.bias"])


def test_apply_never_changes_its_input() -> None:
    state = _state()
    copies = {k: v.clone() for k, v in state.items()}
    for name in list_sanitizers():
        if name != "finetune":
            create_sanitizer(name).apply(state, seed=0)
    assert all(torch.equal(state[k], copies[k]) for k in state)


@pytest.mark.parametrize(
    ("name", "options", "needle"),
    [
        ("lsb-randomize", {"bits": 24}, "bits must be 1-23"),
        ("prune", {"percent": 100.0}, "percent must be in [0, 100)"),
        ("int8", {"per": "row"}, "unknown int8 granularity"),
        ("noise", {"sigma": -1.0}, "sigma must be >= 0"),
        ("fp16", {"scope": "some"}, "unknown scope"),
        ("fp16", {"bits": 3}, "has no option 'bits'"),
        ("finetune", {"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
    ],
)
def test_bad_options_are_clear_errors(name, options, needle) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        create_sanitizer(name, **options)


def test_unknown_sanitizer_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownNameError, match="lsb-randomize"):
        create_sanitizer("lsb-random")


def test_finetune_learning_rate_is_a_tenth_of_the_optimizers_usual_rate() -> None:
    from covertml.defenses.finetune import FineTune

    # the cifar10 recipe trains with SGD at 0.1; its own optimizer keeps a tenth of that
    assert FineTune().config_for("cifar10").lr == pytest.approx(0.01)
    # an Adam-trained model is fine-tuned with Adam at 1e-4, not at 0.01
    cfg = FineTune(optimizer="adam", epochs=3).config_for("cifar10", seed=5)
    assert (cfg.optimizer, cfg.lr, cfg.epochs, cfg.schedule, cfg.seed) == (
        "adam", pytest.approx(1e-4), 3, "constant", 5,
    )  # fmt: skip
    assert FineTune(optimizer="adam", lr=0.5).config_for("cifar10").lr == 0.5
