"""The LSB payload: compression, optional AEAD encryption, optional Reed-Solomon, framing.

Byte layout written into the low bits (all integers big-endian)::

    plain:      LEN(4) CRC(4) BODY(LEN)
    encrypted:  SALT(16) MASKED[LEN(4) CRC(4)] NONCE(12) CIPHERTEXT(LEN - 12)
    with ECC:   the frame above, zero-padded to whole blocks of (255 - nsym) bytes, each
                block Reed-Solomon encoded to 255 bytes

``BODY`` is the compressed secret; CRC is CRC-32 of BODY (or of NONCE + CIPHERTEXT).
Encryption derives 40 bytes from the passphrase with scrypt (n=2**14, r=8, p=1) and the
random SALT: 32 bytes of ChaCha20-Poly1305 key and 8 bytes that mask the header, so an
encrypted payload has no plaintext structure at all. See ``docs/KEY_AND_PAYLOAD.md``.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import struct
import zlib
from collections.abc import Callable
from typing import Literal

import numpy as np

from covertml.attacks.ecc import protect, recover
from covertml.errors import CovertMLError

Compression = Literal["none", "zlib", "lzma", "png-gzip"]
COMPRESSIONS: tuple[Compression, ...] = ("none", "zlib", "lzma", "png-gzip")
HEADER = 8
#: Raw LZMA2, preset 6 (8 MiB dictionary): the decoder must use the same dictionary size.
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6}]
SALT = 16
NONCE = 12


class PayloadError(CovertMLError, ValueError):
    """The payload could not be recovered (damaged, or settings that do not match)."""


class WrongKeyError(PayloadError):
    """The passphrase does not decrypt the payload."""


def compress(
    raw: bytes, method: Compression, *, image_shape: tuple[int, int] | None = None
) -> bytes:
    """Compresses the serialized secret.

    ``png-gzip`` (the paper's choice) needs ``image_shape``: each ``H x W`` image becomes a
    PNG, the PNGs are length-prefixed, concatenated and gzipped.

    Example:
        >>> data = bytes(1000)
        >>> all(decompress(compress(data, m, image_shape=(10, 10)), m) == data
        ...     for m in COMPRESSIONS)
        True
    """
    if method == "none":
        return raw
    if method == "zlib":
        return zlib.compress(raw, 9)
    if method == "lzma":
        return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    if method == "png-gzip":
        if image_shape is None:
            raise ValueError("png-gzip compression needs image_shape")
        from PIL import Image

        h, w = image_shape
        images = np.frombuffer(raw, dtype=np.uint8).reshape(-1, h, w)
        out = io.BytesIO()
        for img in images:
            buf = io.BytesIO()
            Image.fromarray(img, mode="L").save(buf, format="PNG")
            out.write(struct.pack(">I", buf.tell()) + buf.getvalue())
        return gzip.compress(out.getvalue(), 9, mtime=0)
    raise ValueError(f"unknown compression {method!r}")


def decompress(body: bytes, method: Compression) -> bytes:
    """Inverse of :func:`compress`."""
    try:
        if method == "none":
            return body
        if method == "zlib":
            return zlib.decompress(body)
        if method == "lzma":
            return lzma.decompress(body, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
        if method == "png-gzip":
            from PIL import Image

            data, pos, parts = gzip.decompress(body), 0, []
            while pos < len(data):
                (size,) = struct.unpack(">I", data[pos : pos + 4])
                img = Image.open(io.BytesIO(data[pos + 4 : pos + 4 + size]))
                parts.append(np.asarray(img, dtype=np.uint8).tobytes())
                pos += 4 + size
            return b"".join(parts)
    except (zlib.error, lzma.LZMAError, OSError, struct.error, EOFError) as exc:
        raise PayloadError(
            f"the payload does not decompress ({type(exc).__name__})",
            fix="the model was modified after encoding, or the key's compression is wrong",
        ) from None
    raise ValueError(f"unknown compression {method!r}")


def _derive(passphrase: str, salt: bytes) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    material = Scrypt(salt=salt, length=40, n=2**14, r=8, p=1).derive(passphrase.encode())
    return material[:32], material[32:]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def frame(body: bytes, *, passphrase: str | None = None, ecc_symbols: int = 0) -> bytes:
    """Frames (and optionally encrypts and protects) ``body``; see the module layout.

    Example:
        >>> unframe(frame(b"secret", passphrase="pw", ecc_symbols=16), passphrase="pw",
        ...         ecc_symbols=16)
        b'secret'
    """
    if passphrase is None:
        out = struct.pack(">II", len(body), zlib.crc32(body)) + body
    else:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        salt, nonce = os.urandom(SALT), os.urandom(NONCE)
        key, mask = _derive(passphrase, salt)
        sealed = nonce + ChaCha20Poly1305(key).encrypt(nonce, body, None)
        header = struct.pack(">II", len(sealed), zlib.crc32(sealed))
        out = salt + _xor(header, mask) + sealed
    if ecc_symbols:
        out = _rs_encode(out, ecc_symbols)
    return out


def framed_size(body_len: int, *, encrypted: bool, ecc_symbols: int = 0) -> int:
    """Bytes that :func:`frame` produces for a body of ``body_len`` bytes."""
    size = HEADER + body_len + (SALT + NONCE + 16 if encrypted else 0)
    if ecc_symbols:
        k = 255 - ecc_symbols
        size = -(-size // k) * 255
    return size


def _rs_encode(data: bytes, nsym: int) -> bytes:
    k = 255 - nsym  # whole codewords: the reader asks for their raw size
    return protect(data + bytes((-len(data)) % k), nsym)


def _rs_decode(data: bytes, nsym: int) -> bytes:
    decoded, report = recover(data, nsym)
    if report.failed:
        raise PayloadError(
            "the payload has more errors than its Reed-Solomon code can correct",
            fix="the model was modified too much after encoding (more ECC symbols resist more)",
        )
    return decoded


def unframe(
    read: bytes | bytearray | Callable[[int], bytes],
    *,
    passphrase: str | None = None,
    ecc_symbols: int = 0,
    capacity: int | None = None,
) -> bytes:
    """Recovers the body from the payload stream.

    Args:
        read: The payload stream: bytes, or a callable ``read(n) -> bytes`` giving the first
            ``n`` bytes (so only what the header asks for is extracted).
        passphrase: The key's passphrase, when the payload is encrypted.
        ecc_symbols: Reed-Solomon symbols per 255-byte block, as when encoding.
        capacity: Bytes the carriers hold (default: ``len(read)`` for bytes input).

    Raises:
        WrongKeyError: the passphrase does not open the payload.
        PayloadError: the payload is damaged or the settings do not match.
    """
    if isinstance(read, bytes | bytearray):
        buffer = bytes(read)
        capacity = len(buffer) if capacity is None else capacity

        reader: Callable[[int], bytes] = lambda n: buffer[:n]  # noqa: E731
    else:
        if capacity is None:
            raise ValueError("unframe needs the capacity when given a reader")
        reader = read

    def raw_size(n: int) -> int:
        return -(-n // (255 - ecc_symbols)) * 255 if ecc_symbols else n

    def get(n: int) -> bytes | None:
        if raw_size(n) > capacity:
            return None
        raw = bytes(reader(raw_size(n)))
        return _rs_decode(raw, ecc_symbols)[:n] if ecc_symbols else raw

    lead = SALT if passphrase is not None else 0
    head = get(lead + HEADER)
    if head is None:
        raise PayloadError("the model is too small to hold a payload header", fix=DAMAGE_FIX)
    salt = head[:lead]
    key = mask = b""
    if passphrase is not None:
        key, mask = _derive(passphrase, salt)
        length, crc = struct.unpack(">II", _xor(head[lead:], mask))
    else:
        length, crc = struct.unpack(">II", head)
    total = lead + HEADER + length
    data = get(total)
    if data is None:
        if passphrase is not None:
            raise WrongKeyError(
                "wrong passphrase: the payload header does not decrypt", fix=KEY_FIX
            )
        raise PayloadError("no valid payload header found", fix=DAMAGE_FIX)
    body = data[lead + HEADER :]
    if zlib.crc32(body) != crc:
        if passphrase is not None:
            raise WrongKeyError("wrong passphrase, or the payload is damaged", fix=KEY_FIX)
        raise PayloadError("the payload checksum does not match", fix=DAMAGE_FIX)
    if passphrase is None:
        return body
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    try:
        return ChaCha20Poly1305(key).decrypt(body[:NONCE], body[NONCE:], None)
    except InvalidTag:
        raise WrongKeyError("the payload does not authenticate", fix=KEY_FIX) from None


DAMAGE_FIX = "the model was modified after encoding, or the key's bits/ECC settings are wrong"
KEY_FIX = "use the key file written when this model was trained"
