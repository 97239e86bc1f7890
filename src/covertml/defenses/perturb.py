"""Perturbation sanitizers: magnitude pruning and Gaussian noise."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch

from covertml.defenses.base import Sanitizer, Scope, register_sanitizer
from covertml.errors import ConfigError


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class Prune(Sanitizer):
    """Zeroes the ``percent`` % smallest-magnitude values of each weight tensor.

    Example:
        >>> import numpy as np, torch
        >>> w = torch.tensor([[0.1, -0.4, 0.2, 0.3]])
        >>> Prune(percent=50.0).transform(w, rng=np.random.default_rng()).tolist()
        [[0.0, -0.4000000059604645, 0.0, 0.30000001192092896]]
    """

    name: ClassVar[str] = "prune"
    default_scope: ClassVar[Scope] = "weights"

    percent: float = 20.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.percent < 100.0:
            raise ConfigError(f"percent must be in [0, 100), got {self.percent}", fix="e.g. 20")

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        k = round(tensor.numel() * self.percent / 100.0)
        if k == 0:
            return tensor.clone()
        flat = tensor.reshape(-1)
        order = torch.argsort(flat.abs(), stable=True)  # ties go by position: deterministic
        out = flat.clone()
        out[order[:k]] = 0.0
        return out.reshape(tensor.shape)


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class Noise(Sanitizer):
    """Adds Gaussian noise of standard deviation ``sigma`` x each weight tensor's own std.

    Example:
        >>> import numpy as np, torch
        >>> w = torch.linspace(-1, 1, 10_000)
        >>> out = Noise(sigma=0.1).transform(w, rng=np.random.default_rng(0))
        >>> round(float((out - w).std() / w.std()), 2)
        0.1
    """

    name: ClassVar[str] = "noise"
    default_scope: ClassVar[Scope] = "weights"

    sigma: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.sigma >= 0.0:
            raise ConfigError(f"sigma must be >= 0, got {self.sigma}", fix="e.g. 0.05")

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (see the class)."""
        if tensor.numel() < 2:
            return tensor.clone()
        std = float(tensor.to(torch.float64).std())
        noise = rng.standard_normal(tensor.shape).astype(np.float32) * (self.sigma * std)
        return tensor + torch.from_numpy(noise).to(tensor.dtype)
