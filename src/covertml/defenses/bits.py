"""Low-bit sanitizers: randomize (the paper's countermeasure) or clear the low mantissa bits.

Both view each float32 tensor as little-endian ``uint32`` words and rewrite the low ``bits``
bits of every word at once. With ``bits`` up to 23 only mantissa bits change, so every value
moves by less than ``2**(bits - 23)`` of its own magnitude; an LSB payload of that many bits
or fewer is gone.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from covertml.defenses.base import Sanitizer, register_sanitizer
from covertml.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class _LowBits(Sanitizer):
    bits: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.bits <= 23:
            raise ConfigError(
                f"bits must be 1-23 (the float32 mantissa), got {self.bits}",
                fix="e.g. bits=16; more bits would change exponents and signs",
            )

    def _words(self, tensor: torch.Tensor) -> np.ndarray:
        if tensor.dtype != torch.float32:
            raise ConfigError(
                f"{self.name} works on float32 tensors, got {tensor.dtype}",
                fix="convert the model to float32 first",
            )
        return tensor.numpy().astype("<f4").view("<u4")  # a copy, in explicit byte order

    def _mask(self) -> np.uint32:
        return np.uint32((1 << self.bits) - 1)


def _floats(words: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(words.view("<f4").astype(np.float32, copy=False))


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class LSBRandomize(_LowBits):
    """Replaces the low ``bits`` bits of every float32 with random bits (the paper's fix).

    Example:
        >>> import numpy as np, torch
        >>> w = torch.ones(1000)
        >>> out = LSBRandomize(bits=8).transform(w, rng=np.random.default_rng(0))
        >>> bool((out != w).any()), float((out - w).abs().max()) < 2**-15
        (True, True)
    """

    name: ClassVar[str] = "lsb-randomize"

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        words = self._words(tensor)
        noise = rng.integers(0, 1 << self.bits, size=words.shape, dtype=np.uint32)
        words &= ~self._mask()
        words |= noise
        return _floats(words)


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class LSBZero(_LowBits):
    """Clears the low ``bits`` bits of every float32 (rounds toward zero).

    Example:
        >>> import numpy as np, torch
        >>> LSBZero(bits=23).transform(torch.tensor([1.75]), rng=np.random.default_rng()).item()
        1.0
    """

    name: ClassVar[str] = "lsb-zero"

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        words = self._words(tensor)
        words &= ~self._mask()
        return _floats(words)
