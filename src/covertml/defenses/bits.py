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

from covertml.defenses.base import Sanitizer, register_sanitizer
from covertml.errors import ConfigError
from covertml.floats import FloatFormat, check_bits, from_words, low_mask, require_format, to_words

KEEP_BITS = 5
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

    def _words(self, tensor: torch.Tensor) -> tuple[np.ndarray, FloatFormat, int]:
        fmt = require_format(tensor.dtype)
        return to_words(tensor), fmt, self.bits_for(tensor.dtype)


def random_low_bits(words: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Random values below ``2**bits`` in the dtype of ``words``, drawn 64 bits at a time."""
    lanes = 8 // words.itemsize
    raw = rng.bit_generator.random_raw(-(-words.size // lanes))
    noise = np.asarray(raw, dtype="<u8").view(words.dtype)[: words.size]
    out: np.ndarray = noise & words.dtype.type((1 << bits) - 1)
    return out


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

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        words, fmt, bits = self._words(tensor)
        noise = random_low_bits(words, bits, rng)
        words &= ~low_mask(bits, fmt)
        words |= noise
        return from_words(words, fmt, tuple(tensor.shape))


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

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        words, fmt, bits = self._words(tensor)
        words &= ~low_mask(bits, fmt)
        return from_words(words, fmt, tuple(tensor.shape))
