"""Sign encoding (white-box, malicious regularizer): one secret bit per weight's sign.

Each secret bit becomes ``s_i = +1`` or ``-1``; the term ``lam * mean(max(0, margin -
theta_i * s_i))`` pushes every carrier's sign to its bit. Decoding reads ``theta_i > 0``
and packs the bits back into pixels (8 bits, most significant first) or token ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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
from covertml.attacks.layout import Layout, column_positions, make_layout
from covertml.attacks.secrets import Secret, check_fits, secret_from_dataset
from covertml.attacks.strength import (
    AUTO,
    AUTO_SHARE,
    StrengthController,
    holdout_indices,
    parse_lam,
)
from covertml.data.base import Dataset
from covertml.errors import ConfigError

AUTO_START = 10.0  # the paper's lower strength; the controller goes on from there


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


@register_attack
@dataclass(frozen=True, kw_only=True)
class SignAttack(Attack):
    """Sign encoding: a regularizer that sets each carrier's sign to one secret bit.

    Args:
        lam: Strength ``lambda_s`` of the sign term, or ``"auto"`` (default): steered
            while training until the signs hold the secret to ``target``, under an
            accuracy guard on a held-out slice of the training data
            (:mod:`covertml.attacks.strength`). A number is the paper's fixed term
            (about 10-50 there).
        margin: Hinge margin; 0 is the paper's term, a small margin (e.g. 1e-3) keeps
            weights away from zero so later noise flips fewer signs.
        protect: ``msb`` weighs each image bit's hinge by its significance (mean 1), so
            a wrong high-order bit -- 128 grey levels -- costs 128 times a wrong
            low-order one; ``none`` is the paper's uniform term. Default: ``msb`` with
            ``lam="auto"``, ``none`` with a fixed ``lam`` (the paper's behaviour). Text
            symbols are always uniform (a token id is right or wrong).
        target: The quality ``lam="auto"`` steers to: 1 - the mean symbol error relative
            to the symbol range for images (default 0.99, a MAPE of about 2.6), the share
            of whole symbols right for text (default 0.96).
        layout: Where the bits go (:mod:`covertml.attacks.layout`): ``columns`` (text in
            a linear model: feature by feature over every class's weights), ``tail``
            (from the start of the latest tensor from which on they fit) or ``flat`` (the
            paper's: every carrier in order). ``auto`` (default): ``flat`` with a fixed
            ``lam``, else ``columns`` for text in a linear model and ``tail`` otherwise.
            Recorded in the key.
        share: Without ``--n-secrets``, the share of the room the secret fills (at least
            one item); the rest stay free for the task. Default: 1 with a fixed ``lam``
            (the paper's), else 0.25 (docs/ATTACK_STRENGTH.md).
    """

    name: ClassVar[str] = "sign"
    threat: ClassVar = "white-box"

    lam: float | str = AUTO
    margin: float = 0.0
    protect: Literal["msb", "none"] | None = None
    target: float | None = None
    layout: str = "auto"
    share: float | None = None

    def __post_init__(self) -> None:
        lam = parse_lam(self.lam)
        object.__setattr__(self, "lam", AUTO if lam is None else lam)  # "5" -> 5.0
        if self.margin < 0:
            raise ConfigError("margin must be >= 0", fix="e.g. margin=0")
        if self.protect not in (None, "msb", "none"):
            raise ConfigError(f"unknown protect {self.protect!r}", fix="use msb or none")
        if self.target is not None and not 0 < self.target <= 1:
            raise ConfigError(f"target must be in (0, 1], got {self.target}", fix="e.g. 0.99")
        if self.share is not None and not 0 < self.share <= 1:
            raise ConfigError(f"share must be in (0, 1], got {self.share}", fix="e.g. share=0.5")
        if self.layout not in ("auto", "flat", "tail", "columns"):
            raise ConfigError(
                f"unknown layout {self.layout!r}", fix="choose one of: auto, flat, tail, columns"
            )

    def plan(
        self, model: nn.Module, dataset: Dataset, *, n_secrets: int | None = None, seed: int = 0
    ) -> AttackPlan:
        """Chooses the secret and returns the sign loss term (and its controller)."""
        cmap = CarrierMap.from_model(model)
        full = secret_from_dataset(dataset)
        bps = full.bits_per_symbol
        lam = parse_lam(self.lam)
        first = cmap.shapes[0]
        linear_text = full.kind == "text" and len(first) == 2
        name = self.layout
        if name == "auto":
            name = "flat" if lam is not None else ("columns" if linear_text else "tail")
        if name == "columns" and len(first) != 2:
            raise ConfigError(
                f"layout 'columns' needs a 2-D first carrier; {cmap.names[0]!r} is {first}",
                fix="use layout=flat or tail for this model",
            )
        room = math.prod(first) if name == "columns" else cmap.size
        share = self.share if self.share is not None else (1.0 if lam is not None else AUTO_SHARE)
        if n_secrets is None:  # fill a share of the room, leaving the rest to the task
            room = max(int(share * room), min(room, full.size_of(1) * bps))
        what = f"{room:,} carriers ({name} layout) at {bps} bits/symbol"
        secret = check_fits(full, n_secrets, room // bps, what=what)
        bits = symbols_to_bits(secret.values, bps)
        where: Where
        if name == "columns":
            where = column_positions(first, bits.size)
            settings: dict[str, Any] = {"name": "columns"}
        else:
            where = make_layout(name, cmap, pilot=0, secret=bits.size)
            settings = where.to_dict()
        image = secret.kind == "image"
        protect = self.protect or ("msb" if lam is None else "none")
        weights = bit_weights(secret.values.size, bps) if image and protect == "msb" else None
        controller, exclude = None, np.zeros(0, np.int64)
        if lam is None:
            exclude = holdout_indices(len(dataset.train), reserved=secret.count, seed=seed)
            controller = StrengthController(
                lambda m: symbol_quality(m, cmap, bits, bps, image=image, layout=where),
                target=self.target or (0.99 if image else 0.96),
                start=AUTO_START,
                holdout=dataset.train.take(exclude) if len(exclude) else None,
            )
        term = SignLoss(
            cmap,
            bits,
            lam=lam or 0.0,
            margin=self.margin,
            weights=weights,
            controller=controller,
            counts=where.counts(cmap) if isinstance(where, Layout) else None,
            index=where if isinstance(where, np.ndarray) else None,
        )
        key = self.make_key(
            secret,
            carriers=cmap,
            seed=seed,
            model=model,
            dataset=dataset,
            settings={"layout": settings},
        )
        return AttackPlan(
            secret,
            key,
            loss_terms=(term,),
            callbacks=(controller,) if controller is not None else (),
            exclude=tuple(int(i) for i in exclude),
        )

    @classmethod
    def decode(cls, model: nn.Module, key: AttackKey) -> Secret:
        """Reads one bit per carrier sign and packs the bits into symbols."""
        assert key.carriers is not None
        template = Secret.from_spec(key.secret, np.zeros(0, np.int64))
        bps = template.bits_per_symbol
        n_bits = Secret.spec_symbols(key.secret) * bps
        layout = key.settings.get("layout")
        where: Where
        if isinstance(layout, dict) and layout.get("name") == "columns":
            where = column_positions(key.carriers.shapes[0], n_bits)
        else:
            where = Layout.from_dict(layout, pilot=0, secret=n_bits)
        bits = carrier_values(model, key.carriers, where) > 0
        values = bits_to_symbols(bits, bps)
        return template.with_values(np.clip(values, 0, template.levels - 1))
