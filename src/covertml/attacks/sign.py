"""Sign encoding (white-box, malicious regularizer): one secret bit per weight's sign.

Each secret bit becomes ``s_i = +1`` or ``-1``; the term ``lam * mean(max(0, margin -
theta_i * s_i))`` pushes every carrier's sign to its bit. Decoding reads ``theta_i > 0``
and packs the bits back into pixels (8 bits, most significant first) or token ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from covertml.attacks.base import (
    Attack,
    AttackPlan,
    bits_to_symbols,
    register_attack,
    symbols_to_bits,
)
from covertml.attacks.carriers import CarrierMap, flat_prefixes, full_grad
from covertml.attacks.key import AttackKey
from covertml.attacks.secrets import Secret, check_fits, secret_from_dataset
from covertml.data.base import Dataset
from covertml.errors import ConfigError


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
        factor = -float(grad) * ctx.scale
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
        self, carriers: CarrierMap, bits: np.ndarray, *, lam: float, margin: float = 0.0
    ) -> None:
        super().__init__()
        signs = torch.as_tensor(np.asarray(bits, dtype=np.float32) * 2 - 1)
        self.register_buffer("signs", signs)
        self.carriers = carriers
        self.lam = lam
        self.margin = margin

    def forward(self, model: nn.Module) -> torch.Tensor:
        """The loss term for the current parameters."""
        signs = self.get_buffer("signs")
        n = signs.numel()
        tensors, counts = zip(*self.carriers.prefix(model, n), strict=True)
        signs = signs.to(tensors[0].device)
        loss: torch.Tensor = _SignHinge.apply(  # type: ignore[no-untyped-call]
            signs, self.margin, self.lam / n, counts, *tensors
        )
        return loss


@register_attack
@dataclass(frozen=True, kw_only=True)
class SignAttack(Attack):
    """Sign encoding: a regularizer that sets each carrier's sign to one secret bit.

    Args:
        lam: Strength ``lambda_s`` of the sign term (the paper: about 10-50).
        margin: Hinge margin; 0 is the paper's term, a small margin (e.g. 1e-3) keeps
            weights away from zero so later noise flips fewer signs.
    """

    name: ClassVar[str] = "sign"
    threat: ClassVar = "white-box"

    lam: float = 10.0
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.lam < 0 or self.margin < 0:
            raise ConfigError("lam and margin must be >= 0", fix="e.g. lam=10 margin=0")

    def plan(
        self, model: nn.Module, dataset: Dataset, *, n_secrets: int | None = None, seed: int = 0
    ) -> AttackPlan:
        """Chooses the secret and returns the sign loss term."""
        cmap = CarrierMap.from_model(model)
        full = secret_from_dataset(dataset)
        bps = full.bits_per_symbol
        secret = check_fits(
            full, n_secrets, cmap.size // bps, what=f"{cmap.size:,} carriers at {bps} bits/symbol"
        )
        term = SignLoss(cmap, symbols_to_bits(secret.values, bps), lam=self.lam, margin=self.margin)
        key = self.make_key(secret, carriers=cmap, seed=seed, model=model, dataset=dataset)
        return AttackPlan(secret, key, loss_terms=(term,))

    @classmethod
    def decode(cls, model: nn.Module, key: AttackKey) -> Secret:
        """Reads one bit per carrier sign and packs the bits into symbols."""
        assert key.carriers is not None
        template = Secret.from_spec(key.secret, np.zeros(0, np.int64))
        bps = template.bits_per_symbol
        n_bits = Secret.spec_symbols(key.secret) * bps
        bits = key.carriers.read_numpy(model)[:n_bits] > 0
        values = bits_to_symbols(bits, bps)
        return template.with_values(np.clip(values, 0, template.levels - 1))
