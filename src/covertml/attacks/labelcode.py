"""Symbol coding for capacity abuse: secret bits <-> class labels in base ``c``.

Pixels are first quantized to ``k`` bits (decoded to bucket centres). The secret's bit
stream is then cut into chunks of ``B`` bits, and each chunk is written as ``D`` base-``c``
digits -- one digit per synthetic input's label -- where ``D`` and ``B`` are chosen so that
``2**B <= c**D < 2**64`` and ``B <= max_bits``, with the most bits per label. A wrong label
garbles one chunk, so ``max_bits`` trades density for error locality: the default 16 gives
a 10-class model 13 bits in 4 labels (3.25 bits per label, 98% of log2(10) = 3.32), while
``max_bits=63`` gives 63 bits in 19 labels (3.316). A binary model carries 1 bit per label.
The alphabet never exceeds the class count. Everything is vectorized over chunks; loops
run over the (at most 64) digit positions only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from covertml.errors import ConfigError


@dataclass(frozen=True)
class LabelCode:
    """``bits`` secret bits per ``digits`` labels of base ``classes``.

    Example:
        >>> code = label_code(10)
        >>> (code.bits, code.digits), code.bits_per_label
        ((13, 4), 3.25)
        >>> round(label_code(10, max_bits=63).bits_per_label, 3)
        3.316
    """

    classes: int
    bits: int
    digits: int

    @property
    def bits_per_label(self) -> float:
        """Secret bits carried by one label."""
        return self.bits / self.digits if self.bits else 0.0

    def labels_for(self, n_bits: int) -> int:
        """Labels (= synthetic inputs = queries) needed for ``n_bits`` secret bits."""
        return -(-n_bits // self.bits) * self.digits

    def bits_in(self, n_labels: int) -> int:
        """Secret bits that ``n_labels`` labels hold (whole chunks only)."""
        return (n_labels // self.digits) * self.bits

    def to_dict(self) -> dict[str, int]:
        """JSON-able form."""
        return asdict(self)


DEFAULT_CHUNK_BITS = 16


@lru_cache(maxsize=64)
def label_code(classes: int, max_bits: int = DEFAULT_CHUNK_BITS, align: int = 1) -> LabelCode:
    """The chunk code with the most bits per label for a ``classes``-way model.

    Chunks hold at most ``max_bits`` (1-63) bits, a multiple of ``align`` (8: whole
    bytes, so that a wrong label garbles whole bytes of an error-correcting code and no
    more); among equally dense codes the shortest chunk wins.

    Example:
        >>> c = label_code(10, 16, align=8)
        >>> (c.bits, c.digits)
        (16, 5)
    """
    if not 1 <= max_bits <= 63:
        raise ConfigError(f"chunk_bits must be 1-63, got {max_bits}", fix="e.g. 16")
    if classes < 2:
        raise ConfigError(
            f"a model with {classes} class(es) cannot carry information in its labels",
            fix="capacity abuse needs a classifier with at least 2 classes",
        )
    if align < 1 or align > max_bits:
        raise ConfigError(f"cannot align chunks of {max_bits} bits to {align}", fix="e.g. 8")
    best = LabelCode(classes, 0, 1)
    d = 1
    while classes**d < 1 << 64:
        b = min(max_bits, (classes**d).bit_length() - 1) // align * align
        if b and b / d > best.bits_per_label + 1e-12:
            best = LabelCode(classes, b, d)
        d += 1
    return best


def bits_to_labels(bits: np.ndarray, code: LabelCode) -> np.ndarray:
    """Encodes a 0/1 array as ``code.labels_for(len(bits))`` labels in ``[0, classes)``.

    Example:
        >>> bits_to_labels(np.array([1, 0, 1]), label_code(2)).tolist()[-3:]
        [1, 0, 1]
    """
    b = np.asarray(bits, dtype=np.uint8).reshape(-1)
    n_chunks = -(-b.size // code.bits)
    padded = np.zeros((n_chunks, 64), dtype=np.uint8)  # chunk bits right-aligned in 64
    flat = np.zeros(n_chunks * code.bits, dtype=np.uint8)
    flat[: b.size] = b
    padded[:, 64 - code.bits :] = flat.reshape(n_chunks, code.bits)
    values = np.packbits(padded, axis=1).view(">u8").reshape(-1).astype(np.uint64)
    digits = np.empty((n_chunks, code.digits), dtype=np.int64)
    base = np.uint64(code.classes)
    for j in range(code.digits - 1, -1, -1):  # least significant digit last
        values, digit = np.divmod(values, base)
        digits[:, j] = digit.astype(np.int64)
    return digits.reshape(-1)


def labels_to_bits(labels: np.ndarray, code: LabelCode, n_bits: int) -> np.ndarray:
    """Inverse of :func:`bits_to_labels`: the first ``n_bits`` bits held by ``labels``.

    Labels outside ``[0, classes)`` are an error; chunks whose digits overflow ``2**bits``
    (possible only when the model mislabels a synthetic input) are clipped.

    Example:
        >>> code = label_code(10)
        >>> bits = np.array([1, 1, 0, 1, 0, 0, 1])
        >>> labels_to_bits(bits_to_labels(bits, code), code, 7).tolist()
        [1, 1, 0, 1, 0, 0, 1]
    """
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if lab.size and (lab.min() < 0 or lab.max() >= code.classes):
        raise ValueError(f"labels must lie in [0, {code.classes})")
    n_chunks = lab.size // code.digits
    digits = lab[: n_chunks * code.digits].reshape(n_chunks, code.digits).astype(np.uint64)
    values = np.zeros(n_chunks, dtype=np.uint64)
    base = np.uint64(code.classes)
    for j in range(code.digits):
        values = values * base + digits[:, j]  # < classes**digits < 2**64: never wraps
    top = np.uint64((1 << code.bits) - 1)
    values = np.minimum(values, top)
    raw = np.unpackbits(values.astype(">u8").view(np.uint8).reshape(n_chunks, 8), axis=1)
    bits = raw[:, 64 - code.bits :].reshape(-1)
    if bits.size < n_bits:
        raise ValueError(f"{lab.size} labels hold {bits.size} bits, fewer than {n_bits}")
    return bits[:n_bits]


def quantize(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Pixel values 0-255 to ``bits``-bit bucket indices.

    Example:
        >>> quantize(np.array([0, 15, 16, 255]), 4).tolist()
        [0, 0, 1, 15]
    """
    if not 1 <= bits <= 8:
        raise ConfigError(f"cannot quantize pixels to {bits} bits", fix="choose 1 to 8 bits")
    return np.asarray(pixels, dtype=np.int64) >> (8 - bits)


def dequantize(buckets: np.ndarray, bits: int) -> np.ndarray:
    """Bucket indices to the buckets' centres (exact values when ``bits == 8``).

    Example:
        >>> dequantize(np.array([0, 1, 15]), 4).tolist()
        [8, 24, 248]
    """
    width = 1 << (8 - bits)
    return np.asarray(buckets, dtype=np.int64) * width + width // 2
