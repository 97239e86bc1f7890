"""Sanitizers: transformations a model owner applies to a model before releasing it.

A sanitizer is a small frozen dataclass of keyword-only options, registered by name. Most
work tensor by tensor on a state dict (:meth:`Sanitizer.apply`), so they also clean files
covertml did not write; those that retrain (``finetune``) need the model and the owner's
data (:meth:`Sanitizer.sanitize`). Integer tensors (batch-norm step counters) are never
touched.

Example:
    >>> import torch
    >>> from covertml.defenses import create_sanitizer
    >>> s = create_sanitizer("lsb-zero", bits=8)
    >>> x = torch.tensor([1.0 + 2**-20])
    >>> s.apply({"w": x})["w"].item() == 1.0
    True
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from covertml.data.base import Dataset
from covertml.errors import ConfigError
from covertml.registry import Registry

Scope = Literal["all", "weights"]
SEED_TAG = 0x5A11  # mixed into the seed so sanitizer noise never repeats an attack's stream


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sanitizer(ABC):
    """Base class of the sanitizers.

    Attributes:
        scope: ``"all"`` floating tensors (weights, biases, batch-norm statistics) or only
            ``"weights"`` (tensors of two or more dimensions).
    """

    name: ClassVar[str]
    needs_data: ClassVar[bool] = False
    #: Whether each value's new value depends on that value alone, so that files can be
    #: sanitized in chunks of a tensor (bounded memory whatever the tensor's size).
    elementwise: ClassVar[bool] = False
    default_scope: ClassVar[Scope] = "all"

    scope: Scope | None = None

    def __post_init__(self) -> None:
        if self.scope not in (None, "all", "weights"):
            raise ConfigError(f"unknown scope {self.scope!r}", fix="use all or weights")

    def selects(self, tensor: torch.Tensor) -> bool:
        """Whether this sanitizer changes ``tensor``."""
        return self.selects_kind(floating=tensor.is_floating_point(), ndim=tensor.ndim)

    def selects_kind(self, *, floating: bool, ndim: int) -> bool:
        """Whether this sanitizer changes tensors of this kind (floating, ``ndim`` dims)."""
        if not floating:
            return False
        return (self.scope or self.default_scope) == "all" or ndim >= 2

    @abstractmethod
    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """The sanitized copy of one float tensor (same shape and dtype)."""

    def apply(
        self, state: dict[str, torch.Tensor], *, seed: int = 0, dataset: Dataset | None = None
    ) -> dict[str, torch.Tensor]:
        """A sanitized copy of a state dict; ``state`` is left as it was."""
        if self.needs_data:
            raise ConfigError(
                f"sanitizer {self.name!r} retrains the model, so it needs the model itself",
                fix="call sanitize(model, dataset=...) or pass --dataset to covertml sanitize",
            )
        rng = np.random.default_rng([seed, SEED_TAG])
        out: dict[str, torch.Tensor] = {}
        for key, tensor in state.items():
            if self.selects(tensor):
                new = self.transform(tensor.detach().to("cpu").contiguous(), rng=rng)
                out[key] = new.to(dtype=tensor.dtype).contiguous()
            else:
                out[key] = tensor.detach().clone()
        return out

    def sanitize(
        self, model: nn.Module, *, seed: int = 0, dataset: Dataset | None = None
    ) -> nn.Module:
        """A sanitized copy of ``model``; ``model`` itself is left as it was."""
        clean = copy.deepcopy(model)
        clean.load_state_dict(self.apply(clean.state_dict(), seed=seed, dataset=dataset))
        return clean.eval()

    def options(self) -> dict[str, Any]:
        """The sanitizer's options, for records."""
        return dataclasses.asdict(self)


SANITIZERS: Registry[Sanitizer] = Registry("sanitizer")


def register_sanitizer(cls: type[Sanitizer]) -> type[Sanitizer]:
    """Class decorator registering a sanitizer under ``cls.name``."""
    return SANITIZERS.register_class(cls)


def list_sanitizers() -> list[str]:
    """Registered sanitizer names.

    Example:
        >>> {"lsb-randomize", "fp16", "int8", "prune", "finetune"} <= set(list_sanitizers())
        True
    """
    return SANITIZERS.names()


def sanitizer_options(name: str) -> list[str]:
    """The option names sanitizer ``name`` accepts."""
    return SANITIZERS.option_names(name)


def create_sanitizer(name: str, **options: Any) -> Sanitizer:
    """Builds sanitizer ``name`` with ``options`` (unknown options are a clear error).

    Example:
        >>> create_sanitizer("prune", percent=30.0).options()["percent"]
        30.0
    """
    return SANITIZERS.create_checked(name, **options)
