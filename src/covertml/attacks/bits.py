"""Vectorized bit packing between a byte stream and the low bits of float words.

The payload is read as one big-endian bit stream (most significant bit of byte 0 first).
Carrier ``i`` holds stream bits ``[i*b, (i+1)*b)`` in its lowest ``b`` bits, most
significant first. Floats are viewed as little-endian ``uint32`` (``'<f4'`` -> ``'<u4'``),
so the layout is the same on every machine; float16 and bfloat16 carriers are their
``'<u2'`` words (see :mod:`covertml.floats`). No Python loop runs per bit or per carrier.
"""

from __future__ import annotations

import numpy as np

from covertml.errors import ConfigError

MAX_BITS = 31


def check_bits(bits: int) -> None:
    """Raises a clear error unless ``1 <= bits <= 31``."""
    if not 1 <= bits <= MAX_BITS:
        raise ConfigError(
            f"cannot use {bits} low bits of a float32", fix=f"choose 1 to {MAX_BITS} bits"
        )


def capacity_bytes(n_carriers: int, bits: int) -> int:
    """Whole bytes that ``n_carriers`` values with ``bits`` low bits each can hold.

    Example:
        >>> capacity_bytes(10, 12)
        15
    """
    return n_carriers * bits // 8


def _pieces(bits: int) -> list[tuple[int, int, int, int, int]]:
    """How the ``bits`` bytes and 8 carriers of one group overlap.

    A group is 8 carriers = ``bits`` bytes of the stream. Returns, for every (carrier ``k``,
    byte ``j``) pair that shares stream bits, ``(k, j, width, byte_shift, value_shift)``:
    the shared ``width`` bits sit ``byte_shift`` bits from the right of byte ``j`` and
    ``value_shift`` bits from the right of carrier ``k``'s value.
    """
    out = []
    for k in range(8):
        lo, hi = k * bits, (k + 1) * bits
        for j in range(lo // 8, (hi - 1) // 8 + 1):
            a, c = max(lo, 8 * j), min(hi, 8 * j + 8)
            out.append((k, j, c - a, 8 * j + 8 - c, hi - c))
    return out


def _stream_values(payload: bytes, bits: int) -> np.ndarray:
    """The ``ceil(8 * len(payload) / bits)`` carrier values that hold ``payload``."""
    n_used = -(-len(payload) * 8 // bits)
    if not payload:
        return np.zeros(0, dtype=np.uint32)
    if bits in (8, 16):  # byte-aligned fast paths: a big-endian reinterpretation
        pad = (-len(payload)) % (bits // 8)
        dtype = ">u1" if bits == 8 else ">u2"
        return np.frombuffer(payload + bytes(pad), dtype=dtype).astype(np.uint32)[:n_used]
    groups = -(-len(payload) // bits)
    if bits > 8:
        return _window_values(payload, bits, groups)[:n_used]
    buf = np.zeros(groups * bits, dtype=np.uint8)
    buf[: len(payload)] = np.frombuffer(payload, dtype=np.uint8)
    table = buf.reshape(groups, bits).T.astype(np.uint32)  # contiguous columns
    out = np.zeros((8, groups), dtype=np.uint32)
    for k, j, width, byte_shift, value_shift in _pieces(bits):
        piece = (table[j] >> np.uint32(byte_shift)) & np.uint32((1 << width) - 1)
        out[k] |= piece << np.uint32(value_shift)
    return out.T.reshape(-1)[:n_used]


CHUNK_GROUPS = 16384  # groups per block: the block's bytes stay in cache for all 8 passes


def _window(buf: np.ndarray, bits: int, g0: int, g: int, k: int, dtype: str) -> np.ndarray:
    """Unaligned view of the 64-bit windows that start at carrier ``k``'s first byte.

    Group ``g0 + i`` starts at byte ``(g0 + i) * bits``; carrier ``k``'s bits start
    ``k * bits`` bits into its group. Since ``bits > 8`` the windows of one ``k`` never
    overlap, and 8 bytes always cover the carrier's bits (offset <= 7, bits <= 31).
    """
    start = (k * bits) // 8
    return np.ndarray((g,), dtype=dtype, buffer=buf, offset=g0 * bits + start, strides=(bits,))


def _window_values(payload: bytes, bits: int, groups: int) -> np.ndarray:
    """Carrier values for ``bits > 8``: one strided big-endian 64-bit read per carrier."""
    buf = np.zeros(groups * bits + 8, dtype=np.uint8)  # 8 spare bytes for the last window
    buf[: len(payload)] = np.frombuffer(payload, dtype=np.uint8)
    out = np.empty((groups, 8), dtype=np.uint32)
    word = np.empty(min(CHUNK_GROUPS, groups), dtype=np.uint64)
    for g0 in range(0, groups, CHUNK_GROUPS):
        g = min(CHUNK_GROUPS, groups - g0)
        w = word[:g]
        for k in range(8):
            w[...] = _window(buf, bits, g0, g, k, ">u8")
            w <<= np.uint64((k * bits) % 8)  # carrier's first bit to the top
            w >>= np.uint64(64 - bits)
            out[g0 : g0 + g, k] = w
    return out.reshape(-1)


def _window_bytes(table: np.ndarray, bits: int, groups: int) -> np.ndarray:
    """Inverse of :func:`_window_values`: OR each carrier's bits into its 64-bit window."""
    buf = np.zeros(groups * bits + 8, dtype=np.uint8)
    word = np.empty(min(CHUNK_GROUPS, groups), dtype=np.uint64)
    mask = np.uint64((1 << bits) - 1)
    for g0 in range(0, groups, CHUNK_GROUPS):
        g = min(CHUNK_GROUPS, groups - g0)
        w = word[:g]
        for k in range(8):
            w[...] = table[g0 : g0 + g, k]
            w &= mask
            w <<= np.uint64(64 - bits - (k * bits) % 8)
            w.byteswap(inplace=True)  # big-endian bytes, written through a native view
            view = _window(buf, bits, g0, g, k, "<u8")
            np.bitwise_or(view, w, out=view)
    return buf[: groups * bits]


def bytes_to_values(payload: bytes, bits: int, n_carriers: int) -> np.ndarray:
    """Splits ``payload`` into ``n_carriers`` ``uint32`` values of ``bits`` bits (zero-padded).

    Works on groups of 8 carriers (= ``bits`` bytes), column by column, so the cost is a
    few vector operations per (carrier, byte) overlap, independent of the payload size.

    Example:
        >>> bytes_to_values(bytes([0b1011_0001]), 4, 3).tolist()
        [11, 1, 0]
    """
    check_bits(bits)
    if len(payload) > capacity_bytes(n_carriers, bits):
        raise ValueError(f"{len(payload)} bytes do not fit in {n_carriers} x {bits} bits")
    values = np.zeros(n_carriers, dtype=np.uint32)
    used = _stream_values(payload, bits)
    values[: used.shape[0]] = used
    return values


def values_to_bytes(values: np.ndarray, bits: int, n_bytes: int) -> bytes:
    """Inverse of :func:`bytes_to_values`: the first ``n_bytes`` of the stream in ``values``.

    Example:
        >>> values_to_bytes(np.array([11, 1, 0], np.uint32), 4, 1).hex()
        'b1'
    """
    check_bits(bits)
    if n_bytes > capacity_bytes(values.shape[0], bits):
        raise ValueError(f"{n_bytes} bytes exceed {values.shape[0]} x {bits} bits")
    n_used = -(-n_bytes * 8 // bits)
    if n_bytes == 0:
        return b""
    if bits in (8, 16):
        dtype = ">u1" if bits == 8 else ">u2"
        return values[:n_used].astype(dtype).tobytes()[:n_bytes]
    groups = -(-n_bytes // bits)
    if bits > 8:
        if values.shape[0] >= groups * 8:  # no padded copy needed
            table = values[: groups * 8].reshape(groups, 8)
        else:
            table = np.zeros((groups, 8), dtype=np.uint32)
            table.reshape(-1)[: values.shape[0]] = values
        return _window_bytes(table, bits, groups)[:n_bytes].tobytes()
    v = np.zeros(groups * 8, dtype=np.uint32)
    n = min(values.shape[0], groups * 8)
    v[:n] = values[:n] & np.uint32((1 << bits) - 1)
    table = v.reshape(groups, 8).T.copy()  # contiguous columns
    out = np.zeros((bits, groups), dtype=np.uint32)
    for k, j, width, byte_shift, value_shift in _pieces(bits):
        piece = (table[k] >> np.uint32(value_shift)) & np.uint32((1 << width) - 1)
        out[j] |= piece << np.uint32(byte_shift)
    return out.T.astype(np.uint8).tobytes()[:n_bytes]


def embed_words(words: np.ndarray, payload: bytes, bits: int) -> np.ndarray:
    """A copy of ``words`` (``uint16``/``uint32`` float words) carrying ``payload`` low.

    The low ``bits`` of each word hold the stream; words past the payload keep their bits.

    Example:
        >>> out = embed_words(np.zeros(8, "<u2"), bytes([0xAB, 0xCD]), 2)
        >>> extract_words(out, 2, 2).hex()
        'abcd'
    """
    check_bits(bits)
    width = 8 * words.dtype.itemsize
    if bits >= width:
        raise ValueError(f"{bits} bits do not fit in {width}-bit words")
    if len(payload) > capacity_bytes(words.shape[0], bits):
        raise ValueError(f"{len(payload)} bytes do not fit in {words.shape[0]} x {bits} bits")
    values = _stream_values(payload, bits)
    n_used = values.shape[0]
    out = np.array(words, copy=True)
    out[:n_used] &= ~out.dtype.type((1 << bits) - 1)
    out[:n_used] |= values.astype(out.dtype)
    return out


def extract_words(words: np.ndarray, bits: int, n_bytes: int) -> bytes:
    """The first ``n_bytes`` of the stream held in the low ``bits`` of ``words``."""
    n_used = min(words.shape[0], 8 * -(-n_bytes // bits))  # whole groups, no padded copy
    return values_to_bytes(np.asarray(words[:n_used], dtype=np.uint32), bits, n_bytes)


def embed_low_bits(floats: np.ndarray, payload: bytes, bits: int) -> np.ndarray:
    """A copy of ``floats`` (float32) whose lowest ``bits`` bits carry ``payload``.

    Carriers past the payload keep their original bits.

    Example:
        >>> out = embed_low_bits(np.ones(4, np.float32), bytes([255]), 2)
        >>> extract_low_bits(out, 2, 1).hex()
        'ff'
    """
    raw = np.ascontiguousarray(floats, dtype="<f4").view("<u4")
    return embed_words(raw, payload, bits).view("<f4")


def extract_low_bits(floats: np.ndarray, bits: int, n_bytes: int) -> bytes:
    """The first ``n_bytes`` of the stream held in the lowest ``bits`` bits of ``floats``."""
    return extract_words(np.ascontiguousarray(floats, dtype="<f4").view("<u4"), bits, n_bytes)


def randomize_low_bits(floats: np.ndarray, bits: int, *, seed: int | None = None) -> np.ndarray:
    """A copy of ``floats`` with the lowest ``bits`` bits replaced by random bits."""
    check_bits(bits)
    raw = np.ascontiguousarray(floats, dtype="<f4").view("<u4")
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 1 << bits, size=raw.shape, dtype=np.uint32)
    mask = np.uint32((1 << bits) - 1)
    return ((raw & ~mask) | noise).view("<f4")
