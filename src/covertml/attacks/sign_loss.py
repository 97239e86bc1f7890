"""The sign-encoding loss term and how its carriers are read (see :mod:`covertml.attacks.sign`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from covertml.attacks.carriers import CarrierMap, flat_prefixes, full_grad
from covertml.attacks.layout import Layout
from covertml.attacks.strength import StrengthController


class _SignHinge(torch.autograd.Function):
    """``scale * sum(max(0, margin - theta * s))`` over carrier tensors, in one node.

    ``theta`` is the concatenation of the first ``counts[i]`` values of each tensor. One
    node for all tensors keeps the fixed per-step cost low on small models. Only float
    kernels are used (bool comparisons and ``where`` are several times slower on CPU):
    each clamped slack ``d`` is saved, ``sign(d)`` is exactly the hinge's active mask, and
    the gradient ``-scale * s * sign(d)`` reuses the slack's memory (fresh multi-megabyte
    allocations cost page faults every step).
    """

    @staticmethod
    def forward(
        ctx: Any,
        signs: torch.Tensor,
        margin: float,
        scale: float,
        counts: tuple[int, ...],
        *tensors: torch.Tensor,
    ) -> torch.Tensor:
        slacks, total, offset = [], tensors[0].new_zeros(()), 0
        bias = tensors[0].new_tensor(margin)
        for flat in flat_prefixes(tensors, counts):
            part = signs[offset : offset + flat.numel()]
            slack = torch.addcmul(bias, flat, part, value=-1.0).clamp_min_(0)
            total = total + slack.sum()
            slacks.append(slack)
            offset += flat.numel()
        ctx.save_for_backward(signs, *tensors)
        # Intermediates, private to this node (not inputs or outputs), so they live on ctx:
        # backward consumes them in place, and a second backward rebuilds them.
        ctx.slacks = slacks
        ctx.margin, ctx.scale, ctx.counts = margin, scale, counts
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        signs, *tensors = ctx.saved_tensors
        slacks = ctx.slacks or [None] * len(tensors)
        ctx.slacks = None  # consumed below; a second backward rebuilds them
        factor = grad.neg() * ctx.scale  # a 0-dim tensor: no host round trip per step
        grads: list[torch.Tensor | None] = [None, None, None, None]
        offset = 0
        for tensor, flat, slack in zip(
            tensors, flat_prefixes(tuple(tensors), ctx.counts), slacks, strict=True
        ):
            part = signs[offset : offset + flat.numel()]
            offset += flat.numel()
            if slack is None:  # a second backward (retain_graph=True): rebuild the slack
                slack = torch.addcmul(flat.new_tensor(ctx.margin), flat, part, value=-1.0)
                slack.clamp_min_(0)
            grads.append(full_grad(tensor, slack.sign_().mul_(part).mul_(factor)))
        return tuple(grads)


class SignLoss(nn.Module):
    """``lam * mean(max(0, margin - theta[:l] * s))`` with ``s`` in {-1, +1}.

    Example:
        >>> model = nn.Linear(2, 1, bias=False)
        >>> term = SignLoss(CarrierMap.from_model(model), np.array([1, 0]), lam=1.0)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[-2.0, -1.0]]))
        >>> float(term(model).detach())  # first weight has the wrong sign: max(0, 2) / 2
        1.0
    """

    name = "sign"

    def __init__(
        self,
        carriers: CarrierMap,
        bits: np.ndarray,
        *,
        lam: float,
        margin: float = 0.0,
        weights: np.ndarray | None = None,
        controller: StrengthController | None = None,
        counts: tuple[int, ...] | None = None,
        index: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        signs = np.asarray(bits, dtype=np.float32) * 2 - 1
        if weights is not None:  # a weighted hinge: s_i * w_i (exact for margin 0)
            signs = signs * np.asarray(weights, dtype=np.float32)
        self.register_buffer("signs", torch.as_tensor(signs))
        self.carriers = carriers
        self.counts = counts  # values used at the start of each tensor; None: a prefix
        self.gather = index is not None  # else: flat positions in the first carrier tensor
        if index is not None:
            self.register_buffer("index", torch.as_tensor(np.asarray(index, dtype=np.int64)))
        self.lam = lam
        self.margin = margin
        self.controller = controller

    def forward(self, model: nn.Module) -> torch.Tensor:
        """The loss term for the current parameters."""
        signs = self.get_buffer("signs")
        n = signs.numel()
        lam = self.controller.step(model) if self.controller is not None else self.lam
        if self.gather:  # scattered carriers: a plain autograd gather and hinge
            first = self.carriers.tensors(model)[0]
            theta = first.reshape(-1)[self.get_buffer("index").to(first.device)]
            slack = (self.margin - theta * signs.to(first.device)).clamp_min(0)
            return slack.sum() * (lam / n)
        used = (
            self.carriers.prefix(model, n)
            if self.counts is None
            else self.carriers.select(model, self.counts)
        )
        tensors, counts = zip(*used, strict=True)
        signs = signs.to(tensors[0].device)
        loss: torch.Tensor = _SignHinge.apply(  # type: ignore[no-untyped-call]
            signs, self.margin, lam / n, counts, *tensors
        )
        return loss


def bit_weights(n_symbols: int, bits_per_symbol: int) -> np.ndarray:
    """Per-carrier weights ``2**significance``, mean 1: a wrong MSB costs 128 grey levels.

    Example:
        >>> [round(w, 4) for w in bit_weights(2, 2).tolist()]
        [1.3333, 0.6667, 1.3333, 0.6667]
    """
    w = 2.0 ** np.arange(bits_per_symbol - 1, -1, -1, dtype=np.float64)
    w = np.tile(w / w.mean(), n_symbols)
    return w.astype(np.float32)


Where = Layout | np.ndarray  # segments of the carrier stream, or positions in its first tensor


def carrier_values(model: nn.Module, carriers: CarrierMap, layout: Where) -> np.ndarray:
    """The values of the carriers that hold the secret, in order (no autograd)."""
    with torch.no_grad():
        if isinstance(layout, np.ndarray):
            first = carriers.tensors(model)[0].detach().reshape(-1)
            picked: np.ndarray = first[torch.as_tensor(layout)].cpu().float().numpy()
            return picked
        used = carriers.select(model, layout.counts(carriers))
        parts = [t.detach().reshape(-1)[:k] for t, k in used]
        stream = torch.cat(parts).cpu().float().numpy()
        if not layout.pilot[1]:  # no pilot: the used stream is the secret, in order
            return stream
        values: np.ndarray = stream[layout.positions()[1]]
        return values


def symbol_quality(
    model: nn.Module,
    carriers: CarrierMap,
    bits: np.ndarray,
    bps: int,
    *,
    image: bool,
    layout: Where,
) -> float:
    """How well the signs hold the secret now (1 is perfect).

    Images: 1 - the mean symbol error relative to the symbol range; text: the share of
    symbols with every bit right.
    """
    got = carrier_values(model, carriers, layout) > 0  # only the carriers that hold the secret
    wrong = (got != bits.astype(bool)).reshape(-1, bps)
    if not image:
        return float(1.0 - wrong.any(axis=1).mean())
    scale = 2.0 ** np.arange(bps - 1, -1, -1)
    return float(1.0 - (wrong @ scale).mean() / (2**bps - 1))
