"""A multilayer perceptron for small images (the digits default)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from covertml.models.layers import make_normalize
from covertml.models.registry import register_model


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU`` hidden layers, then a linear classifier.

    Args:
        input_shape: Shape of one input, e.g. ``(1, 8, 8)``.
        num_classes: Output classes.
        hidden: Sizes of the hidden layers.
        dropout: Dropout after each hidden layer.
        mean: Per-channel input mean (for image input of shape ``(C, H, W)``).
        std: Per-channel input std.

    Example:
        >>> MLP(input_shape=(1, 8, 8), num_classes=10)(torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = make_normalize(int(input_shape[0]), mean, std)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(int(s) for s in input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns logits."""
        return self.net(self.normalize(x))  # type: ignore[no-any-return]


@register_model(
    "mlp", help="multilayer perceptron for small images (digits default)", modality="image"
)
def mlp(**args: Any) -> nn.Module:
    """Builds an :class:`MLP`."""
    return MLP(**args)
