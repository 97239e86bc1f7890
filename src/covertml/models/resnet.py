"""CIFAR-style ResNet (He et al. 2016): 6n+2 layers, widths 16/32/64, as in the paper.

The paper's reference code uses ResNet-32 (n = 5) with batch norm after every convolution,
1x1 projection shortcuts where the shape changes, global average pooling and a dense layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from covertml.models.layers import make_normalize
from covertml.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a residual connection."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the block."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet with ``depth = 6n + 2`` layers for small images.

    Args:
        input_shape: ``(C, H, W)``.
        num_classes: Output classes.
        depth: 20, 32, 44, 56, ... (6n + 2).
        widths: Channels of the three stages.
        mean: Per-channel input mean (optional normalization layer).
        std: Per-channel input std.
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 20,
        widths: Sequence[int] = (16, 32, 64),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n+2 (20, 32, 44, ...), got {depth}")
        n = (depth - 2) // 6
        c = int(input_shape[0])
        self.normalize = make_normalize(c, mean, std)
        self.conv = nn.Conv2d(c, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        layers: list[nn.Module] = []
        c_in = widths[0]
        for stage, width in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(c_in, width, stride))
                c_in = width
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns logits for ``x`` of shape ``N x C x H x W`` in [0, 1]."""
        out = F.relu(self.bn(self.conv(self.normalize(x))))
        out = self.blocks(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)  # type: ignore[no-any-return]


def resnet(**args: Any) -> nn.Module:
    """CIFAR-style ResNet (see :class:`CifarResNet`)."""
    return CifarResNet(**args)


register_model(
    "resnet",
    help="CIFAR-style ResNet of any depth 6n+2 (--model-arg depth=N)",
    modality="image",
)(resnet)
for _depth in (20, 32, 56):
    register_model(
        f"resnet{_depth}",
        help=f"ResNet-{_depth}, widths 16/32/64"
        + (" (the paper's CIFAR-10 model)" if _depth == 32 else ""),
        modality="image",
        defaults={"depth": _depth},
    )(resnet)
