"""Carrier maps: the ordered, deterministic view of the float parameters that hold a secret.

By default the carriers are every trainable floating-point tensor with two or more
dimensions, in ``named_parameters()`` order -- convolution kernels and dense weight
matrices, never biases, batch-norm parameters or statistics, or integer buffers. Encoder and
decoder derive the identical view from the architecture plus the names stored in the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from covertml.errors import ConfigError
from covertml.floats import FloatFormat, from_words, to_words

Rule = Literal["weights", "all-float"]


def flat_prefixes(tensors: tuple[torch.Tensor, ...], counts: tuple[int, ...]) -> list[torch.Tensor]:
    """Flat views of the first ``counts[i]`` values of each tensor (no autograd nodes)."""
    return [t.reshape(-1)[:k] for t, k in zip(tensors, counts, strict=True)]


def full_grad(tensor: torch.Tensor, flat_grad: torch.Tensor) -> torch.Tensor:
    """``flat_grad`` for a prefix of ``tensor``, as a gradient of ``tensor``'s shape."""
    if flat_grad.numel() == tensor.numel():
        return flat_grad.view(tensor.shape)
    out = tensor.new_zeros(tensor.numel())
    out[: flat_grad.numel()] = flat_grad
    return out.view(tensor.shape)


@dataclass(frozen=True)
class CarrierMap:
    """Which parameter tensors carry the secret, in order.

    Attributes:
        names: Parameter names in ``named_parameters()`` order.
        shapes: Their shapes.
        rule: How they were selected (``"weights"``: trainable tensors with >= 2 dims;
            ``"all-float"``: every floating-point tensor of the state dict, including
            batch-norm statistics -- what the paper's LSB reference code overwrites).

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> cmap = CarrierMap.from_model(model)
        >>> cmap.names, cmap.size
        (('0.weight', '2.weight'), 18)
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    rule: Rule = "weights"

    @classmethod
    def from_model(cls, model: nn.Module, *, rule: Rule = "weights") -> CarrierMap:
        """Selects the carriers of ``model`` by ``rule``."""
        if rule == "weights":
            items = [
                (n, p)
                for n, p in model.named_parameters()
                if p.requires_grad and p.dim() >= 2 and p.dtype.is_floating_point
            ]
        elif rule == "all-float":
            items = [(n, t) for n, t in model.state_dict().items() if t.dtype.is_floating_point]
        else:
            raise ConfigError(f"unknown carrier rule {rule!r}", fix="use 'weights' or 'all-float'")
        if not items:
            raise ConfigError(
                f"{type(model).__name__} has no carrier parameters under rule {rule!r}",
                fix="use a model with weight matrices or rule='all-float'",
            )
        return cls(tuple(n for n, _ in items), tuple(tuple(t.shape) for _, t in items), rule)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CarrierMap:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(data["names"]),
            tuple(tuple(int(s) for s in shape) for shape in data["shapes"]),
            data.get("rule", "weights"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in the attacker's key)."""
        return {
            "rule": self.rule,
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
        }

    @property
    def size(self) -> int:
        """Total number of carrier values."""
        return sum(math.prod(s) for s in self.shapes)

    def tensors(self, model: nn.Module) -> list[torch.Tensor]:
        """The carrier tensors of ``model`` (live parameters, so gradients flow).

        Raises:
            ConfigError: ``model`` lacks a carrier or has one of another shape.
        """
        source: dict[str, torch.Tensor] = dict(model.named_parameters())
        if self.rule == "all-float":
            source = {**model.state_dict(keep_vars=True), **source}
        out = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            tensor = source.get(name)
            if tensor is None or tuple(tensor.shape) != shape:
                got = "missing" if tensor is None else f"shape {tuple(tensor.shape)}"
                raise ConfigError(
                    f"carrier {name!r} of the key is {got} in this model (expected {shape})",
                    fix="use the key that was written for this model's architecture",
                )
            out.append(tensor)
        return out

    def flat(self, model: nn.Module) -> torch.Tensor:
        """All carriers concatenated into one differentiable 1-D tensor."""
        return torch.cat([t.reshape(-1) for t in self.tensors(model)])

    def prefix(self, model: nn.Module, n: int) -> list[tuple[torch.Tensor, int]]:
        """The carrier tensors holding the first ``n`` values, each with its used count.

        Loss terms take whole tensors and flatten them inside one autograd node, so no
        view or slice nodes are recorded per step and nothing is concatenated.
        """
        out, offset = [], 0
        for tensor in self.tensors(model):
            if offset >= n:
                break
            used = min(tensor.numel(), n - offset)
            out.append((tensor, used))
            offset += used
        if offset < n:
            raise ValueError(f"the carriers hold {offset} values, fewer than {n}")
        return out

    def select(self, model: nn.Module, counts: tuple[int, ...]) -> list[tuple[torch.Tensor, int]]:
        """The carrier tensors with a nonzero ``counts[i]``, each with that count."""
        tensors = self.tensors(model)
        return [(t, k) for t, k in zip(tensors, counts, strict=True) if k > 0]

    def read_numpy(self, model: nn.Module) -> np.ndarray:
        """A float32 NumPy copy of all carriers, concatenated."""
        with torch.no_grad():
            parts = [t.detach().to("cpu", torch.float32).reshape(-1) for t in self.tensors(model)]
            return torch.cat(parts).numpy().copy()

    def read_words(self, model: nn.Module, fmt: FloatFormat) -> np.ndarray:
        """All carriers as words of ``fmt`` (each converted to it first), concatenated."""
        with torch.no_grad():
            parts = [t.detach().to("cpu", fmt.torch_dtype).reshape(-1) for t in self.tensors(model)]
            return to_words(torch.cat(parts))

    def write_words(self, model: nn.Module, words: np.ndarray, fmt: FloatFormat) -> None:
        """Overwrites the carriers of ``model`` in place with the values of ``fmt`` words."""
        if words.shape != (self.size,):
            raise ValueError(f"expected {self.size} words, got {words.shape}")
        values = from_words(words, fmt)
        offset = 0
        with torch.no_grad():
            for tensor in self.tensors(model):
                n = tensor.numel()
                tensor.copy_(values[offset : offset + n].view(tensor.shape).to(tensor.dtype))
                offset += n

    def write_numpy(self, model: nn.Module, values: np.ndarray) -> None:
        """Overwrites the carriers of ``model`` in place with ``values`` (float32, 1-D)."""
        if values.shape != (self.size,):
            raise ValueError(f"expected {self.size} values, got {values.shape}")
        offset = 0
        with torch.no_grad():
            for tensor in self.tensors(model):
                n = tensor.numel()
                chunk = torch.from_numpy(np.ascontiguousarray(values[offset : offset + n]))
                tensor.copy_(chunk.view(tensor.shape).to(tensor.dtype))
                offset += n
