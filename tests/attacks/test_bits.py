"""Bit-level round trips of the LSB codec, checked against a plain bit-string model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from covertml.attacks.bits import (
    bytes_to_values,
    capacity_bytes,
    embed_low_bits,
    extract_low_bits,
    randomize_low_bits,
    values_to_bytes,
)
from covertml.errors import ConfigError


def reference_values(payload: bytes, bits: int, n: int) -> list[int]:
    """Independent model: the payload as a string of '0'/'1', cut into bits-wide pieces."""
    stream = "".join(f"{byte:08b}" for byte in payload)
    stream += "0" * (n * bits - len(stream))
    return [int(stream[i * bits : (i + 1) * bits], 2) for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), bits=st.integers(1, 31), spare=st.integers(0, 20))
def test_values_match_the_bit_string_model(payload: bytes, bits: int, spare: int) -> None:
    n = -(-len(payload) * 8 // bits) + spare
    values = bytes_to_values(payload, bits, n)
    assert values.tolist() == reference_values(payload, bits, n)
    assert values_to_bytes(values, bits, len(payload)) == payload


@settings(max_examples=150, deadline=None)
@given(
    payload=st.binary(max_size=200),
    bits=st.integers(1, 31),
    seed=st.integers(0, 2**32 - 1),
)
def test_embedding_changes_only_the_low_bits(payload: bytes, bits: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = -(-len(payload) * 8 // bits) + 3
    floats = rng.normal(size=n).astype(np.float32)
    out = embed_low_bits(floats, payload, bits)
    before, after = floats.view("<u4"), out.view("<u4")
    high = ~np.uint32((1 << bits) - 1)
    assert np.array_equal(before & high, after & high)
    assert extract_low_bits(out, bits, len(payload)) == payload
    low = (after & ~high).tolist()
    used = -(-len(payload) * 8 // bits)
    assert low[:used] == reference_values(payload, bits, used)
    assert np.array_equal(after[used:], before[used:])  # carriers past the payload untouched
    assert np.array_equal(floats.view("<u4"), before)  # the input is not modified


def test_byte_order_is_explicit_little_endian_uint32() -> None:
    out = embed_low_bits(np.zeros(2, dtype=np.float32), bytes([0x12, 0x34]), 16)
    assert out.view("<u4")[0] == 0x1234
    assert out.tobytes()[:2] == bytes([0x34, 0x12])


def test_capacity_and_errors() -> None:
    assert capacity_bytes(100, 12) == 150
    with pytest.raises(ValueError, match="do not fit"):
        embed_low_bits(np.zeros(3, np.float32), bytes(7), 16)
    with pytest.raises(ConfigError, match="1 to 31"):
        embed_low_bits(np.zeros(3, np.float32), b"", 32)


def test_randomize_keeps_high_bits_and_destroys_low_bits() -> None:
    floats = np.random.default_rng(0).normal(size=10_000).astype(np.float32)
    payload = bytes(range(256)) * 70
    marked = embed_low_bits(floats, payload, 16)
    clean = randomize_low_bits(marked, 16, seed=1)
    high = np.uint32(0xFFFF0000)
    assert np.array_equal(clean.view("<u4") & high, marked.view("<u4") & high)
    recovered = extract_low_bits(clean, 16, len(payload))
    assert np.mean(np.frombuffer(recovered, np.uint8) == np.frombuffer(payload, np.uint8)) < 0.02
