"""Small building blocks shared by the image models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Subtracts a per-channel mean and divides by a per-channel std.

    The statistics are model *arguments* (stored in the model file's metadata), held as
    non-persistent buffers, so they never appear among the parameters or tensors.

    Example:
        >>> Normalize([0.5], [0.5])(torch.ones(1, 1, 2, 2)).flatten().tolist()
        [1.0, 1.0, 1.0, 1.0]
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalizes ``x`` of shape ``N x C x H x W``."""
        return (x - self.mean) / self.std


def make_normalize(
    channels: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> nn.Module:
    """A :class:`Normalize` layer, or identity when no statistics are given."""
    if mean is None or std is None:
        return nn.Identity()
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std need {channels} values, got {len(mean)}/{len(std)}")
    return Normalize(mean, std)
