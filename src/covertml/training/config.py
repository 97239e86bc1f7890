"""What a training run is told (:class:`TrainConfig`) and what it reports (its results).

Also the optimizer and learning-rate schedule a configuration names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from covertml.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        epochs: Passes over the training data.
        batch_size: Examples per step.
        lr: Initial learning rate.
        optimizer: ``"sgd"`` (Nesterov momentum) or ``"adam"``.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        schedule: ``"constant"``, ``"step"`` (times ``gamma`` at ``milestones``) or ``"cosine"``.
        milestones: Epochs after which the step schedule multiplies the rate by ``gamma``.
        gamma: Step-schedule factor.
        augment: ``"none"`` or ``"flip-crop"`` (the paper's CIFAR-10 augmentation).
        seed: Seeds initialization order, shuffling, dropout and augmentation.
        device: ``auto`` (CUDA when present, else MPS, else CPU), ``cpu``, ``cuda``,
            ``cuda:N`` or ``mps`` (:func:`covertml.devices.resolve_device`). On a GPU the
            training set is kept on the device when it fits and the epoch's sums stay
            there (one transfer per epoch); CNNs run ``channels_last`` on CUDA and the
            CPU. The model comes back on the CPU, in the contiguous layout.
        amp: bf16 autocast for the forward pass and the task loss (attack terms on the
            parameters stay in float32).
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: Literal["sgd", "adam"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "cosine"] = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: Literal["none", "flip-crop"] = "none"
    seed: int = 0
    device: str = "auto"
    amp: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(
                f"epochs, batch size and learning rate must be positive (got {self.epochs}, "
                f"{self.batch_size}, {self.lr})",
                fix="pass positive values",
            )
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}", fix="use sgd or adam")
        if self.schedule not in ("constant", "step", "cosine"):
            raise ConfigError(
                f"unknown learning-rate schedule {self.schedule!r}",
                fix="use constant, step or cosine",
            )
        if self.augment not in ("none", "flip-crop"):
            raise ConfigError(f"unknown augmentation {self.augment!r}", fix="use none or flip-crop")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


@dataclass(frozen=True)
class EpochStats:
    """What one epoch measured."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float | None
    lr: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :meth:`Trainer.fit`."""

    config: TrainConfig
    history: tuple[EpochStats, ...]
    test_accuracy: float | None
    seconds: float
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "config": self.config.to_dict(),
            "test_accuracy": self.test_accuracy,
            "seconds": self.seconds,
            "device": self.device,
            "history": [e.to_dict() for e in self.history],
        }


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, over ``model``'s trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule ``cfg`` names (stepped once per configured epoch)."""
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma
        )
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
