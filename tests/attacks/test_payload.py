from __future__ import annotations

import gzip
import io
import lzma
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from covertml.attacks import payload as pl


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=600),
    ecc=st.sampled_from([0, 2, 16, 32]),
    encrypt=st.booleans(),
)
def test_frame_round_trip(body: bytes, ecc: int, encrypt: bool) -> None:
    passphrase = "correct horse" if encrypt else None
    framed = pl.frame(body, passphrase=passphrase, ecc_symbols=ecc)
    assert len(framed) == pl.framed_size(len(body), encrypted=encrypt, ecc_symbols=ecc)
    assert pl.unframe(framed + bytes(50), passphrase=passphrase, ecc_symbols=ecc) == body


def test_plain_frame_layout_is_length_crc_body() -> None:
    framed = pl.frame(b"hello")
    assert framed == struct.pack(">II", 5, zlib.crc32(b"hello")) + b"hello"


def test_encrypted_frame_has_no_plaintext_header() -> None:
    body = bytes(1000)
    framed = pl.frame(body, passphrase="pw")
    assert struct.pack(">I", 1000 + 12 + 16) not in framed[:40]
    assert body[:64] not in framed
    assert pl.frame(body, passphrase="pw") != framed  # fresh salt and nonce every time


def test_wrong_passphrase_and_damage_are_told_apart() -> None:
    framed = pl.frame(b"x" * 100, passphrase="right")
    with pytest.raises(pl.WrongKeyError, match="wrong passphrase"):
        pl.unframe(framed, passphrase="wrong")
    plain = bytearray(pl.frame(b"x" * 100))
    plain[20] ^= 0xFF
    with pytest.raises(pl.PayloadError, match="checksum"):
        pl.unframe(bytes(plain))
    with pytest.raises(pl.PayloadError, match="no valid payload header"):
        pl.unframe(b"\xff" * 64)


def test_reed_solomon_corrects_scattered_errors() -> None:
    body = bytes(range(200)) * 3
    framed = bytearray(pl.frame(body, ecc_symbols=32))
    rng = np.random.default_rng(0)
    for block in range(len(framed) // 255):
        for pos in rng.choice(255, size=10, replace=False):  # 10 < 32 / 2 errors per block
            framed[block * 255 + pos] ^= 0x5A
    assert pl.unframe(bytes(framed), ecc_symbols=32) == body
    for pos in range(40):  # 40 errors in one block: beyond what the code corrects
        framed[pos] ^= 0xA5
    with pytest.raises(pl.PayloadError, match="Reed-Solomon"):
        pl.unframe(bytes(framed), ecc_symbols=32)


def test_compressions_decode_with_standard_tools() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 6, 5)).astype(np.uint8)
    raw = images.tobytes()
    assert zlib.decompress(pl.compress(raw, "zlib")) == raw
    raw_lzma = lzma.decompress(
        pl.compress(raw, "lzma"), format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]
    )
    assert raw_lzma == raw
    blob = gzip.decompress(pl.compress(raw, "png-gzip", image_shape=(6, 5)))
    (size,) = struct.unpack(">I", blob[:4])
    first = np.asarray(Image.open(io.BytesIO(blob[4 : 4 + size])))
    assert np.array_equal(first, images[0])
    for method in pl.COMPRESSIONS:
        packed = pl.compress(raw, method, image_shape=(6, 5))
        assert pl.decompress(packed, method) == raw
    with pytest.raises(pl.PayloadError, match="does not decompress"):
        pl.decompress(b"garbage", "zlib")


@settings(max_examples=80, deadline=None)
@given(
    body=st.binary(min_size=1, max_size=300),
    position=st.integers(0, 10_000),
    flip=st.integers(1, 255),
    encrypt=st.booleans(),
)
def test_damage_is_detected_never_returned_as_data(body, position, flip, encrypt) -> None:
    passphrase = "pw" if encrypt else None
    framed = bytearray(pl.frame(body, passphrase=passphrase))
    framed[position % len(framed)] ^= flip
    try:
        out = pl.unframe(bytes(framed) + bytes(16), passphrase=passphrase)
    except pl.PayloadError:
        return  # detected (WrongKeyError is a PayloadError too)
    assert out == body  # never wrong data (CRC-32 catches every single-byte error anyway)


@settings(max_examples=40, deadline=None)
@given(body=st.binary(min_size=1, max_size=200), other=st.text(min_size=1, max_size=12))
def test_any_wrong_passphrase_is_refused(body, other) -> None:
    framed = pl.frame(body, passphrase="the right one")
    if other == "the right one":
        return
    with pytest.raises(pl.WrongKeyError):
        pl.unframe(framed + bytes(64), passphrase=other)


def test_lzma_round_trips_payloads_larger_than_its_dictionary() -> None:
    # a match 9 MB back: only found (and only decodable) with a dictionary that reaches it
    block = np.random.default_rng(0).integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()
    raw = block + bytes(8_000_000) + block
    packed = pl.compress(raw, "lzma")
    assert pl.decompress(packed, "lzma") == raw
