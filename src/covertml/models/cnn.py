"""A VGG-style CNN for face images, about 0.9M parameters at 62x47 (the paper's LFW size)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from covertml.models.layers import make_normalize
from covertml.models.registry import register_model


class FaceCNN(nn.Module):
    """Three conv stages (two 3x3 conv + BN + ReLU, then 2x2 max-pool) and a dense head.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: Output classes.
        widths: Channels of the three stages.
        hidden: Units of the dense hidden layer.
        dropout: Dropout before the classifier.
        mean: Per-channel input mean (optional normalization layer).
        std: Per-channel input std.

    Example:
        >>> m = FaceCNN(input_shape=(3, 62, 47), num_classes=2)
        >>> 800_000 < sum(p.numel() for p in m.parameters()) < 1_000_000
        True
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        widths: Sequence[int] = (32, 64, 128),
        hidden: int = 128,
        dropout: float = 0.3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in input_shape)
        self.normalize = make_normalize(c, mean, std)
        stages: list[nn.Module] = []
        c_in = c
        for width in widths:
            stages += [
                nn.Conv2d(c_in, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = width
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"input {tuple(input_shape)} is too small for {len(widths)} stages")
        self.features = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * h * w, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns logits for ``x`` of shape ``N x C x H x W`` in [0, 1]."""
        return self.head(self.features(self.normalize(x)))  # type: ignore[no-any-return]


@register_model(
    "face-cnn",
    help="VGG-style CNN for faces, ~0.9M parameters at 62x47 (the paper's LFW model size)",
    modality="image",
)
def face_cnn(**args: Any) -> nn.Module:
    """Builds a :class:`FaceCNN`."""
    return FaceCNN(**args)
