"""Float formats as bit patterns: float32, float16 and bfloat16 viewed as unsigned words.

Every bit-level operation in covertml (LSB payloads, low-bit sanitizers, low-bit statistics)
works on a float tensor's *words*: the same bytes read as little-endian unsigned integers of
the float's width (``'<u4'`` for float32, ``'<u2'`` for float16 and bfloat16). The low
``mantissa`` bits of a word are its mantissa, so changing up to that many low bits moves a
value by less than ``2**(bits - mantissa)`` of its own magnitude and never changes its sign
or exponent.

NumPy has no bfloat16, so bfloat16 words are converted to float32 by shifting them into the
high half of a ``uint32`` -- exact, as bfloat16 is float32 with its low 16 bits cut off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from covertml.errors import ConfigError


@dataclass(frozen=True)
class FloatFormat:
    """One IEEE-style binary float format.

    Attributes:
        name: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (torch's names).
        torch_dtype: The matching torch dtype.
        word: NumPy dtype of its words, explicitly little-endian.
        mantissa: Stored mantissa bits (23, 10, 7).
        exponent: Exponent bits (8, 5, 8).
        safetensors: The safetensors dtype code (``F32``, ``F16``, ``BF16``).

    Example:
        >>> float_format(torch.bfloat16).mantissa, float_format("F16").word
        (7, '<u2')
    """

    name: str
    torch_dtype: torch.dtype
    word: str
    mantissa: int
    exponent: int
    safetensors: str

    @property
    def width(self) -> int:
        """Bytes per value."""
        return np.dtype(self.word).itemsize

    @property
    def int_dtype(self) -> torch.dtype:
        """The signed torch integer dtype of the same width (torch has no wide uints)."""
        return torch.int32 if self.width == 4 else torch.int16


FLOAT32 = FloatFormat("float32", torch.float32, "<u4", 23, 8, "F32")
FLOAT16 = FloatFormat("float16", torch.float16, "<u2", 10, 5, "F16")
BFLOAT16 = FloatFormat("bfloat16", torch.bfloat16, "<u2", 7, 8, "BF16")
FORMATS: dict[str, FloatFormat] = {f.name: f for f in (FLOAT32, FLOAT16, BFLOAT16)}
_ALIASES = {
    **{f.safetensors: f for f in FORMATS.values()},
    **{str(f.torch_dtype): f for f in FORMATS.values()},  # "torch.float32"
    "fp32": FLOAT32,
    "fp16": FLOAT16,
    "half": FLOAT16,
    "bf16": BFLOAT16,
}


def float_format(dtype: torch.dtype | str) -> FloatFormat | None:
    """The :class:`FloatFormat` of a torch dtype or dtype name, ``None`` for other dtypes.

    Example:
        >>> float_format("bf16").name, float_format(torch.int64)
        ('bfloat16', None)
    """
    key = str(dtype)
    return FORMATS.get(key) or _ALIASES.get(key) or _ALIASES.get(key.upper())


def require_format(dtype: torch.dtype | str) -> FloatFormat:
    """Like :func:`float_format`, with a clear error for anything but the three formats."""
    fmt = float_format(dtype)
    if fmt is None:
        raise ConfigError(
            f"{dtype} is not a supported float format",
            fix="use float32, float16 or bfloat16 (other tensors are left untouched)",
        )
    return fmt


def check_bits(bits: int, fmt: FloatFormat) -> None:
    """Raises a clear error unless ``1 <= bits <= fmt.mantissa``.

    Example:
        >>> check_bits(7, BFLOAT16)
        >>> check_bits(8, BFLOAT16)
        Traceback (most recent call last):
        ...
        covertml.errors.ConfigError: bits=8 exceeds the 7-bit mantissa of bfloat16 \
-- use 1 to 7 bits for bfloat16 tensors
    """
    if not 1 <= bits <= fmt.mantissa:
        raise ConfigError(
            f"bits={bits} exceeds the {fmt.mantissa}-bit mantissa of {fmt.name}",
            fix=f"use 1 to {fmt.mantissa} bits for {fmt.name} tensors",
        )


def to_words(tensor: torch.Tensor) -> np.ndarray:
    """A flat copy of a float tensor's words (little-endian unsigned integers).

    Example:
        >>> hex(int(to_words(torch.tensor([1.0], dtype=torch.bfloat16))[0]))
        '0x3f80'
    """
    fmt = require_format(tensor.dtype)
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(fmt.int_dtype).numpy()
    return raw.view(raw.dtype.str.replace("i", "u")).astype(fmt.word, copy=True)


def from_words(
    words: np.ndarray, fmt: FloatFormat, shape: tuple[int, ...] | None = None
) -> torch.Tensor:
    """The float tensor whose bit patterns are ``words`` (inverse of :func:`to_words`).

    Example:
        >>> from_words(np.array([0x3F80], "<u2"), BFLOAT16).item()
        1.0
    """
    native = np.ascontiguousarray(words, dtype=fmt.word).astype(fmt.word[1:], copy=False)
    signed = native.view(native.dtype.str.replace("u", "i"))
    out = torch.from_numpy(signed.copy() if not signed.flags.writeable else signed)
    out = out.view(fmt.torch_dtype)
    return out.reshape(shape) if shape is not None else out


def upcast(words: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Words of ``fmt`` as exact ``float32`` values (every format here fits in float32).

    Example:
        >>> upcast(np.array([0x3F80, 0xC000], "<u2"), BFLOAT16).tolist()
        [1.0, -2.0]
    """
    if fmt is FLOAT32:
        return np.ascontiguousarray(words, dtype="<u4").view("<f4").astype(np.float32)
    if fmt is FLOAT16:
        return np.ascontiguousarray(words, dtype="<u2").view("<f2").astype(np.float32)
    wide = np.asarray(words, dtype="<u2").astype(np.uint32) << np.uint32(16)
    return wide.view(np.float32)


def low_mask(bits: int, fmt: FloatFormat) -> np.unsignedinteger:
    """The word with the low ``bits`` bits set, in the format's word dtype."""
    value: np.unsignedinteger = np.dtype(fmt.word).type((1 << bits) - 1)
    return value
