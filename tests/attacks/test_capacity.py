"""Capacity abuse: label coding, synthetic inputs, planning and decoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from covertml.attacks import FunctionOracle, LocalOracle, create_attack, decode_capacity
from covertml.attacks.labelcode import (
    bits_to_labels,
    dequantize,
    label_code,
    labels_to_bits,
    quantize,
)
from covertml.attacks.synthetic import make_text_pool, synthetic_documents, synthetic_images
from covertml.errors import ConfigError
from covertml.models import create_model_for
from covertml.training import recipe, seed_everything


def reference_labels(bits: list[int], classes: int, chunk_bits: int, digits: int) -> list[int]:
    """Independent model: each chunk of bits as a Python integer, written in base c."""
    bits = bits + [0] * (-len(bits) % chunk_bits)
    out = []
    for i in range(0, len(bits), chunk_bits):
        value = int("".join(map(str, bits[i : i + chunk_bits])) or "0", 2)
        chunk = []
        for _ in range(digits):
            value, d = divmod(value, classes)
            chunk.append(d)
        out += chunk[::-1]
    return out


@pytest.mark.parametrize("max_bits", [16, 63])
@pytest.mark.parametrize("classes", [2, 3, 10, 20, 62, 100, 1000])
def test_code_is_the_densest_that_fits(classes: int, max_bits: int) -> None:
    code = label_code(classes, max_bits)
    assert classes**code.digits < 2**64
    assert 2**code.bits <= classes**code.digits
    assert code.bits <= max_bits
    # no denser code exists with D' digits (checked independently with floats)
    for d in range(1, 65):
        if classes**d >= 2**64:
            break
        best = min(max_bits, math.floor(d * math.log2(classes) + 1e-9)) / d
        assert best <= code.bits_per_label + 1e-9
    assert code.bits_per_label <= math.log2(classes) + 1e-12


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([2, 3, 7, 10, 20, 37]),
    st.sampled_from([5, 16, 63]),
    st.lists(st.integers(0, 1), min_size=0, max_size=400),
)
def test_labels_round_trip_and_match_the_integer_model(
    classes: int, max_bits: int, bits: list[int]
) -> None:
    code = label_code(classes, max_bits)
    labels = bits_to_labels(np.array(bits, dtype=np.uint8), code)
    assert labels.size == code.labels_for(len(bits))
    assert labels.tolist() == reference_labels(bits, classes, code.bits, code.digits)
    assert labels.size == 0 or (labels.min() >= 0 and labels.max() < classes)
    assert labels_to_bits(labels, code, len(bits)).tolist() == bits


def test_label_errors() -> None:
    with pytest.raises(ConfigError, match="at least 2 classes"):
        label_code(1)
    code = label_code(10)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        labels_to_bits(np.array([10] * code.digits), code, 5)
    with pytest.raises(ValueError, match="fewer than"):
        labels_to_bits(np.zeros(code.digits, np.int64), code, code.bits + 1)


def test_quantization_floor_is_a_quarter_bucket_on_uniform_pixels() -> None:
    pixels = np.arange(256)
    for bits in (1, 2, 4, 6):
        centres = dequantize(quantize(pixels, bits), bits)
        width = 2 ** (8 - bits)
        assert np.abs(centres - pixels).max() <= width // 2
        assert np.abs(centres - pixels).mean() == pytest.approx(width / 4)
    assert (dequantize(quantize(pixels, 8), 8) == pixels).all()


@pytest.mark.parametrize("kind", ["uniform", "sparse"])
def test_synthetic_images_are_keyed_distinct_and_in_range(kind: str) -> None:
    a = synthetic_images(kind, 500, (8, 8, 1), seed=3)
    assert a.shape == (500, 8, 8, 1) and a.dtype == np.uint8
    assert (a == synthetic_images(kind, 500, (8, 8, 1), seed=3)).all()
    assert not (a == synthetic_images(kind, 500, (8, 8, 1), seed=4)).all()
    assert len({row.tobytes() for row in a}) == 500  # no two inputs alike
    if kind == "sparse":
        assert ((a > 0).reshape(500, -1).sum(1) == 3).all()  # max(3, 64 // 20) bright pixels


def test_synthetic_documents_match_sklearn_tfidf() -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i:03d}" for i in range(200)]
    corpus = [" ".join(rng.choice(words, rng.integers(3, 30))) for _ in range(150)]
    for sublinear in (False, True):
        vec = TfidfVectorizer(sublinear_tf=sublinear).fit(corpus)
        ids = [[vec.vocabulary_[w] for w in doc.split()] for doc in corpus]
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in ids])])
        tokens = np.concatenate(ids)
        n_features = len(vec.vocabulary_)
        pool = make_text_pool(
            offsets, tokens, n_features=n_features, pool_size=40, seed=1, sublinear_tf=sublinear
        )
        docs, x = synthetic_documents(pool, 25, seed=1)
        names = vec.get_feature_names_out()
        expected = vec.transform([" ".join(names[w] for w in doc) for doc in docs])
        assert x.shape == expected.shape
        assert np.allclose(x.toarray(), expected.toarray(), atol=1e-6)


def test_perfect_oracle_recovers_quantized_images(digits) -> None:
    model = create_model_for(digits)
    plan = create_attack("capacity", bits_per_pixel=3).plan(model, digits, n_secrets=5, seed=2)
    assert plan.key.carriers is None and plan.extra_data is not None
    answers = FunctionOracle(lambda x: plan.extra_data.y[: x.shape[0]], batch_size=10**9)
    decoded = decode_capacity(answers, plan.key)
    truth = plan.secret.values
    assert (decoded.values == (truth >> 5) * 32 + 16).all()
    assert answers.queries == plan.key.settings["m"] == len(plan.extra_data)


def test_perfect_oracle_recovers_every_token(toy_text) -> None:
    model = create_model_for(toy_text, "logreg")
    plan = create_attack("capacity", pool_size=50).plan(model, toy_text, n_secrets=6)
    assert sp.issparse(plan.extra_data.x)
    assert plan.extra_data.x.shape == (plan.key.settings["m"], 300)
    decoded = decode_capacity(FunctionOracle(lambda x: plan.extra_data.y), plan.key)
    assert (decoded.values == plan.secret.values).all()
    assert decoded.lengths == plan.secret.lengths


def test_ratio_sets_m_and_errors_explain(digits) -> None:
    model = create_model_for(digits)
    n = len(digits.train)
    plan = create_attack("capacity", ratio=0.5, ecc=0).plan(model, digits)
    code = label_code(10)
    per_image = code.labels_for(64 * 4)
    assert plan.key.settings["m"] <= round(0.5 * n)
    assert plan.secret.count == code.bits_in(round(0.5 * n)) // (64 * 4)
    assert plan.key.settings["m"] == code.labels_for(plan.secret.count * 64 * 4)
    assert per_image > 0
    # with the default Reed-Solomon code: 16 bits in 5 labels, 16 parity bytes per 255
    coded = create_attack("capacity", ratio=0.5).plan(model, digits)
    coded_bytes = round(0.5 * n) // 5 * 2
    data = 239 * (coded_bytes // 255) + max(0, coded_bytes % 255 - 16)
    assert coded.secret.count == data * 8 // (64 * 4)
    secret_bytes = coded.secret.count * 64 * 4 // 8
    blocks = -(-secret_bytes // 239)
    assert coded.key.settings["m"] == (secret_bytes + 16 * blocks) // 2 * 5
    with pytest.raises(ConfigError, match="too few"):
        create_attack("capacity", ratio=0.001).plan(model, digits)
    with pytest.raises(ConfigError, match="between 1 and"):
        create_attack("capacity").plan(model, digits, n_secrets=10**6)
    with pytest.raises(ConfigError, match="bits_per_pixel"):
        create_attack("capacity", bits_per_pixel=9)
    with pytest.raises(ConfigError, match="generator"):
        create_attack("capacity", generator="plasma")
    with pytest.raises(ConfigError, match="chunk_bits"):
        create_attack("capacity", chunk_bits=64)


def test_trained_model_leaks_images_through_labels(digits) -> None:
    seed_everything(0)
    model = create_model_for(digits)
    plan = create_attack("capacity").plan(model, digits, n_secrets=4)
    result = plan.trainer(recipe("digits")).fit(model, digits.train)
    assert result.history[-1].extra["synthetic_acc"] > 0.98
    oracle = LocalOracle(model)
    decoded = decode_capacity(oracle, plan.key)
    truth = plan.secret.values
    floor = np.abs(dequantize(quantize(truth, 4), 4) - truth).mean()
    assert np.abs(decoded.values - truth).mean() <= floor + 1.0
    assert oracle.queries == plan.key.settings["m"]


def test_uniform_generator_follows_the_documented_spec() -> None:
    """docs/KEY_AND_PAYLOAD.md: default_rng([seed, 0x5EED]).integers(0, 256, (m, H, W, C))."""
    rng = np.random.default_rng([9, 0x5EED])
    spec = rng.integers(0, 256, size=(7, 4, 5, 3), dtype=np.uint8)
    assert (synthetic_images("uniform", 7, (4, 5, 3), seed=9) == spec).all()
