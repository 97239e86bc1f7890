"""Reed-Solomon protection of a bit stream, block by block (GF(2^8), 255-byte codewords).

Each codeword holds ``255 - nsym`` data bytes and ``nsym`` parity bytes (the last one is
shortened), and corrects up to ``nsym // 2`` wrong bytes anywhere in it. Decoding is per
codeword: one that has more errors than it can correct is taken as it came (the code is
systematic, so its data bytes are still the best guess) and counted, never raised --
capacity abuse would rather return a secret with a few wrong pixels than none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from covertml.errors import ConfigError

BLOCK = 255


@dataclass(frozen=True)
class Recovery:
    """What decoding found: codewords in all, corrected, and beyond repair."""

    blocks: int
    corrected: int
    failed: int
    byte_errors: int

    def to_dict(self) -> dict[str, int]:
        """JSON-able form."""
        return asdict(self)


def check_nsym(nsym: int) -> None:
    """Raises a clear error for a parity count the code cannot have."""
    if not 0 <= nsym <= 128 or nsym % 2:
        raise ConfigError(
            f"ecc must be an even number of parity bytes from 0 to 128, got {nsym}",
            fix="e.g. ecc=16 (corrects 8 wrong bytes in every 255)",
        )


def protected_size(n_bytes: int, nsym: int) -> int:
    """Bytes that ``n_bytes`` of data take once protected.

    Example:
        >>> protected_size(239, 16), protected_size(240, 16), protected_size(10, 0)
        (255, 272, 10)
    """
    if nsym == 0 or n_bytes == 0:
        return n_bytes
    return n_bytes + -(-n_bytes // (BLOCK - nsym)) * nsym


def data_capacity(n_bytes: int, nsym: int) -> int:
    """Data bytes that ``n_bytes`` of protected stream hold (inverse of the above).

    Example:
        >>> data_capacity(255, 16), data_capacity(272, 16), data_capacity(260, 16)
        (239, 240, 239)
    """
    if nsym == 0:
        return n_bytes
    full, rest = divmod(n_bytes, BLOCK)
    return full * (BLOCK - nsym) + max(0, rest - nsym)


def protect(data: bytes, nsym: int) -> bytes:
    """``data`` with ``nsym`` Reed-Solomon parity bytes after every ``255 - nsym``.

    Example:
        >>> coded = protect(b"secret", 4)
        >>> len(coded), coded[:6]
        (10, b'secret')
    """
    check_nsym(nsym)
    if nsym == 0 or not data:
        return bytes(data)
    from reedsolo import RSCodec

    return bytes(RSCodec(nsym, nsize=BLOCK).encode(bytes(data)))


def recover(coded: bytes, nsym: int) -> tuple[bytes, Recovery]:
    """The data bytes of ``coded``, corrected codeword by codeword where possible.

    Example:
        >>> coded = bytearray(protect(b"secret", 4))
        >>> coded[1] ^= 0xFF  # one wrong byte: within what 4 parity bytes correct
        >>> data, report = recover(bytes(coded), 4)
        >>> data, report.corrected, report.failed
        (b'secret', 1, 0)
    """
    check_nsym(nsym)
    if nsym == 0:
        return bytes(coded), Recovery(0, 0, 0, 0)
    from reedsolo import ReedSolomonError, RSCodec

    codec = RSCodec(nsym, nsize=BLOCK)
    out, corrected, failed, errors = bytearray(), 0, 0, 0
    blocks = [coded[i : i + BLOCK] for i in range(0, len(coded), BLOCK)]
    for block in blocks:
        if len(block) <= nsym:  # a fragment without data: nothing to recover
            continue
        try:
            data, _, where = codec.decode(block)
        except ReedSolomonError:
            failed += 1
            out += block[:-nsym]
            continue
        if len(where):
            corrected += 1
            errors += len(where)
        out += data
    return bytes(out), Recovery(len(blocks), corrected, failed, errors)


def protect_bits(bits: np.ndarray, nsym: int) -> np.ndarray:
    """A 0/1 array, packed to bytes (zero-padded), protected, and unpacked again."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8).reshape(-1)).tobytes()
    return np.unpackbits(np.frombuffer(protect(packed, nsym), dtype=np.uint8))


def recover_bits(bits: np.ndarray, nsym: int, n_bits: int) -> tuple[np.ndarray, Recovery]:
    """The first ``n_bits`` data bits of a protected bit stream, corrected."""
    coded = np.packbits(np.asarray(bits, dtype=np.uint8).reshape(-1)).tobytes()
    data, report = recover(coded, nsym)
    out = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if out.size < n_bits:
        raise ValueError(f"the stream holds {out.size} data bits, fewer than {n_bits}")
    return out[:n_bits], report


def protected_bits(n_bits: int, nsym: int) -> int:
    """Bits that ``n_bits`` of data take once packed and protected."""
    return 8 * protected_size(-(-n_bits // 8), nsym)


def data_bits(n_bits: int, nsym: int) -> int:
    """Data bits that ``n_bits`` of protected stream hold."""
    return 8 * data_capacity(n_bits // 8, nsym)
