"""Precision sanitizers: fp16 and bf16 round trips, int8 quantize-dequantize.

A round trip through a narrower format drops the low mantissa bits an LSB payload lives in
(fp16 keeps 10 mantissa bits, bf16 keeps 7) and perturbs every value by up to half a unit
in the last kept place. int8 goes further: each tensor (or each output channel) keeps 255
evenly spaced levels.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import numpy as np
import torch

from covertml.defenses.base import Sanitizer, Scope, register_sanitizer
from covertml.errors import ConfigError


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class FP16(Sanitizer):
    """Rounds every float to float16 and back (values beyond +-65504 are clamped).

    Example:
        >>> import numpy as np, torch
        >>> FP16().transform(torch.tensor([1.0 + 2**-12]), rng=np.random.default_rng()).item()
        1.0
    """

    name: ClassVar[str] = "fp16"
    elementwise: ClassVar[bool] = True

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        limit = float(torch.finfo(torch.float16).max)
        return tensor.clamp(-limit, limit).to(torch.float16).to(tensor.dtype)


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class BF16(Sanitizer):
    """Rounds every float to bfloat16 and back (same range as float32, 8 significant bits).

    Example:
        >>> import numpy as np, torch
        >>> BF16().transform(torch.tensor([1.0 + 2**-9]), rng=np.random.default_rng()).item()
        1.0
    """

    name: ClassVar[str] = "bf16"
    elementwise: ClassVar[bool] = True

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        return tensor.to(torch.bfloat16).to(tensor.dtype)


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class Int8(Sanitizer):
    """Symmetric int8 quantize-dequantize, per tensor or per output channel.

    Each weight becomes ``scale * round(w / scale)`` clamped to -127..127, with ``scale``
    the largest magnitude / 127 of the tensor (``per="tensor"``) or of each slice along the
    first dimension (``per="channel"``). By default only weight tensors (2+ dimensions) are
    quantized, as int8 deployments keep biases and batch-norm statistics in float.

    Example:
        >>> import numpy as np, torch
        >>> w = torch.tensor([[1.0, 0.5, 0.3]])
        >>> Int8().transform(w, rng=np.random.default_rng()).tolist()  # steps of 1/127
        [[1.0, 0.5039370059967041, 0.29921260476112366]]
    """

    name: ClassVar[str] = "int8"
    default_scope: ClassVar[Scope] = "weights"

    per: Literal["tensor", "channel"] = "tensor"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.per not in ("tensor", "channel"):
            raise ConfigError(f"unknown int8 granularity {self.per!r}", fix="use tensor or channel")

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        x = tensor.to(torch.float32)
        if self.per == "channel" and x.ndim >= 1:
            peak = x.abs().reshape(x.shape[0], -1).amax(dim=1)
            scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))
            zero = torch.zeros(x.shape[0], dtype=torch.int32)
            out = torch.fake_quantize_per_channel_affine(x, scale, zero, 0, -127, 127)
        else:
            peak_value = float(x.abs().max()) if x.numel() else 0.0
            scale_value = peak_value / 127.0 if peak_value > 0 else 1.0
            out = torch.fake_quantize_per_tensor_affine(x, scale_value, 0, -127, 127)
        return out.to(tensor.dtype)
