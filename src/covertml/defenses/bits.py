"""Low-bit sanitizers: randomize (the paper's countermeasure) or clear the low mantissa bits.

Both view each float tensor as its little-endian words (``uint32`` for float32, ``uint16``
for float16 and bfloat16; see :mod:`covertml.floats`) and rewrite the low ``bits`` bits of
every word at once. Only mantissa bits change, so every value moves by less than
``2**(bits - mantissa)`` of its own magnitude and keeps its sign and exponent; an LSB
payload in that many low bits or fewer is gone.

By default ``bits`` follows each tensor's format: the top :data:`KEEP_BITS` mantissa bits
are kept and at most 16 are rewritten -- 16 of float32's 23 (every value within
``2**-7`` of itself), 5 of float16's 10 and 2 of bfloat16's 7 (within ``2**-5``). A payload
an attacker wrote above those bits survives; pass ``bits`` explicitly (up to the smallest
mantissa in the model) to reach it, at a larger perturbation.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from covertml.defenses.base import Sanitizer, register_sanitizer
from covertml.errors import ConfigError
from covertml.floats import FloatFormat, check_bits, from_words, low_mask, require_format, to_words

KEEP_BITS = 5
_BLOCK = 16  # AES block: update_into wants this much room past the data
# The keystream is the encryption of zeros, read from this (never written) buffer a slice at
# a time: cryptography >= 47 refuses an input that overlaps the output.
_ZEROS = memoryview(bytes(1 << 20))
MAX_DEFAULT_BITS = 16


def default_bits(fmt: FloatFormat) -> int:
    """Low bits rewritten by default in ``fmt``: 16 (float32), 5 (float16), 2 (bfloat16).

    Example:
        >>> from covertml.floats import FORMATS
        >>> [default_bits(f) for f in FORMATS.values()]
        [16, 5, 2]
    """
    return max(1, min(MAX_DEFAULT_BITS, fmt.mantissa - KEEP_BITS))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _LowBits(Sanitizer):
    bits: int | None = None
    elementwise: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bits is not None and not 1 <= self.bits <= 23:
            raise ConfigError(
                f"bits must be 1-23 (the float32 mantissa), got {self.bits}",
                fix="e.g. bits=16; more bits would change exponents and signs",
            )

    def bits_for(self, dtype: torch.dtype) -> int:
        """The low bits rewritten in tensors of ``dtype`` (a clear error if too many)."""
        fmt = require_format(dtype)
        if self.bits is None:
            return default_bits(fmt)
        try:
            check_bits(self.bits, fmt)
        except ConfigError as exc:
            raise ConfigError(
                f"{self.name}: {exc.problem}",
                fix=f"use --bits {fmt.mantissa} or fewer, or leave --bits out for the "
                "per-format defaults (float32 16, float16 5, bfloat16 2)",
            ) from None
        return self.bits

    def rewrite_words(
        self,
        words: np.ndarray,
        fmt: FloatFormat,
        *,
        rng: np.random.Generator,
        scratch: np.ndarray | None = None,
    ) -> None:
        """Rewrites the low bits of ``words`` (a flat array of ``fmt`` words) in place.

        ``scratch`` (optional) is a byte buffer at least as large as ``words``, reused for
        noise so that streaming many chunks allocates nothing per chunk.
        """
        raise NotImplementedError

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        fmt = require_format(tensor.dtype)
        words = to_words(tensor)
        self.rewrite_words(words, fmt, rng=rng)
        return from_words(words, fmt, tuple(tensor.shape))


def random_low_bits(
    words: np.ndarray, bits: int, rng: np.random.Generator, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Uniform random values below ``2**bits``, one per word, in the words' dtype.

    The bits come from AES-256 in counter mode under a key drawn from ``rng``: a keystream
    at memory speed that no one without the key can predict, so the replaced bits carry
    nothing an attacker could anticipate. ``out`` (a byte buffer of at least
    ``words.nbytes``) is filled in place instead of a new array.

    Example:
        >>> w = np.zeros(10_000, "<u2")
        >>> noise = random_low_bits(w, 2, np.random.default_rng(0))
        >>> noise.dtype == w.dtype, sorted(set(noise.tolist()))
        (True, [0, 1, 2, 3])
    """
    size = words.nbytes
    if out is None:
        out = np.empty(size + _BLOCK, np.uint8)
    if out.nbytes < size + _BLOCK:
        raise ValueError(f"noise buffer of {out.nbytes} bytes is smaller than {size + _BLOCK}")
    cipher = Cipher(algorithms.AES(rng.bytes(32)), modes.CTR(bytes(_BLOCK))).encryptor()
    raw = memoryview(out.reshape(-1)[: size + _BLOCK])  # type: ignore[arg-type]
    for start in range(0, size, len(_ZEROS)):  # CTR: the stream runs on across the calls
        n = min(len(_ZEROS), size - start)
        cipher.update_into(_ZEROS[:n], raw[start : start + n + _BLOCK])
    noise = out.reshape(-1)[:size].view(words.dtype)
    noise &= words.dtype.type((1 << bits) - 1)
    return noise


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class LSBRandomize(_LowBits):
    """Replaces the low ``bits`` mantissa bits of every float with random bits (the paper's fix).

    Example:
        >>> import numpy as np, torch
        >>> w = torch.ones(1000)
        >>> out = LSBRandomize(bits=8).transform(w, rng=np.random.default_rng(0))
        >>> bool((out != w).any()), float((out - w).abs().max()) < 2**-15
        (True, True)
        >>> h = torch.ones(1000, dtype=torch.bfloat16)  # default: 2 of bfloat16's 7 bits
        >>> out = LSBRandomize().transform(h, rng=np.random.default_rng(0))
        >>> out.dtype, float((out.float() - 1).abs().max()) <= 3 * 2**-7
        (torch.bfloat16, True)
    """

    name: ClassVar[str] = "lsb-randomize"

    def rewrite_words(
        self,
        words: np.ndarray,
        fmt: FloatFormat,
        *,
        rng: np.random.Generator,
        scratch: np.ndarray | None = None,
    ) -> None:
        """Replaces the low bits of ``words`` with random bits, in place."""
        bits = self.bits_for(fmt.torch_dtype)
        noise = random_low_bits(words, bits, rng, out=scratch)
        words &= ~low_mask(bits, fmt)
        words |= noise


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class LSBZero(_LowBits):
    """Clears the low ``bits`` mantissa bits of every float (rounds toward zero).

    Example:
        >>> import numpy as np, torch
        >>> LSBZero(bits=23).transform(torch.tensor([1.75]), rng=np.random.default_rng()).item()
        1.0
        >>> t = torch.tensor([1.75], dtype=torch.float16)
        >>> LSBZero(bits=9).transform(t, rng=np.random.default_rng()).item()
        1.5
    """

    name: ClassVar[str] = "lsb-zero"

    def rewrite_words(
        self,
        words: np.ndarray,
        fmt: FloatFormat,
        *,
        rng: np.random.Generator,
        scratch: np.ndarray | None = None,
    ) -> None:
        """Clears the low bits of ``words``, in place."""
        words &= ~low_mask(self.bits_for(fmt.torch_dtype), fmt)
