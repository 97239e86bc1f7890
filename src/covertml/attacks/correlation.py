"""Correlated value encoding (white-box, malicious regularizer).

Adds ``-lam * |pearson(theta, s)|`` to the training loss, where ``theta`` are the first
carriers and ``s`` the secret's symbols (one pixel or token id per parameter). After
training the carriers are an (approximately) affine image of the secret.

Polarity: ``|r|`` leaves the sign free. The decoder resolves it -- and, for text, the scale
-- **without the original data** from a keyed *pilot block*: the first ``pilot`` carriers
are correlated with pseudo-random symbols drawn from the key's seed, which the decoder
regenerates. ``polarity="signed"`` instead trains ``-lam * r`` (positive by construction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from covertml.attacks.base import Attack, AttackPlan, register_attack
from covertml.attacks.carriers import CarrierMap, flat_prefixes, full_grad
from covertml.attacks.key import AttackKey
from covertml.attacks.layout import LAYOUTS, Layout, choose_layout, make_layout
from covertml.attacks.secrets import Secret, check_fits, secret_from_dataset
from covertml.attacks.strength import (
    AUTO,
    AUTO_SHARE,
    REJOIN_SHARE,
    StrengthController,
    guard_slice,
    parse_lam,
)
from covertml.data.base import Dataset
from covertml.errors import ConfigError


def pilot_symbols(n: int, levels: int, seed: int) -> np.ndarray:
    """The keyed pilot block: ``n`` symbols uniform over ``[0, levels)``."""
    rng = np.random.default_rng([seed, 0x9E3779B9])
    return rng.integers(0, levels, size=n, dtype=np.int64)


class _Pearson(torch.autograd.Function):
    """Pearson r between carrier prefixes and a centered, unit-norm ``target``.

    The carriers are the first ``counts[i]`` values of each tensor, in order. Three fused
    reductions forward and three passes per tensor backward, in one autograd node, without
    ever concatenating the carriers.
    """

    @staticmethod
    def forward(
        ctx: Any, target: torch.Tensor, counts: tuple[int, ...], *tensors: torch.Tensor
    ) -> torch.Tensor:
        n = target.numel()
        dot = sq = total = target.new_zeros(())
        offset = 0
        for piece in flat_prefixes(tensors, counts):
            k = piece.numel()
            dot = dot + torch.dot(piece, target[offset : offset + k])
            sq = sq + torch.dot(piece, piece)
            total = total + piece.sum()
            offset += k
        mean = total / n
        norm = (sq - total * mean).clamp_min(1e-24).sqrt()
        r = dot / norm
        ctx.save_for_backward(target, r, norm, mean, *tensors)
        ctx.counts = counts
        return r

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        target, r, norm, mean, *tensors = ctx.saved_tensors
        # dr/dtheta = (t - r * (theta - mean) / norm) / norm; 0-dim tensors throughout, so
        # the step never waits for the device to hand a number to the host
        coef = r / norm
        shift = coef * mean
        scale = grad / norm
        grads: list[torch.Tensor | None] = [None, None]
        offset = 0
        for tensor, piece in zip(tensors, flat_prefixes(tuple(tensors), ctx.counts), strict=True):
            k = piece.numel()
            g = piece.mul(-coef).add_(target[offset : offset + k]).add_(shift)
            grads.append(full_grad(tensor, g.mul_(scale)))
            offset += k
        return tuple(grads)


class CorrelationLoss(nn.Module):
    """``-lam * |pearson(theta[:l], target)|`` over a carrier map; a trainer loss term.

    Example:
        >>> model = nn.Linear(10, 2, bias=False)
        >>> term = CorrelationLoss(CarrierMap.from_model(model), np.arange(20.0), lam=1.0)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.arange(20.0).view(2, 10) * 3 + 1)
        >>> round(float(term(model).detach()), 4)
        -1.0
    """

    name = "correlation"

    def __init__(
        self,
        carriers: CarrierMap,
        target: np.ndarray,
        *,
        lam: float,
        signed: bool = False,
        controller: StrengthController | None = None,
        counts: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        t = torch.as_tensor(np.asarray(target, dtype=np.float64))
        t = t - t.mean()
        self.register_buffer("target", (t / t.norm().clamp_min(1e-12)).float())
        self.carriers = carriers
        self.counts = counts  # values used at the start of each tensor; None: a prefix
        self.lam = lam
        self.signed = signed
        self.controller = controller
        self.pass_r = True  # the controller's quality is this step's r (else it measures)

    def correlation(self, model: nn.Module) -> torch.Tensor:
        """Pearson's r between the carriers and the target."""
        target = self.get_buffer("target")  # zero mean, unit norm
        used = (
            self.carriers.prefix(model, target.numel())
            if self.counts is None
            else self.carriers.select(model, self.counts)
        )
        tensors, counts = zip(*used, strict=True)
        target = target.to(tensors[0].device)
        r: torch.Tensor = _Pearson.apply(target, counts, *tensors)  # type: ignore[no-untyped-call]
        return r

    def quality(self, model: nn.Module) -> float:
        """The correlation reached (signed or absolute, as trained)."""
        with torch.no_grad():
            r = float(self.correlation(model))
        return r if self.signed else abs(r)

    def forward(self, model: nn.Module) -> torch.Tensor:
        """The loss term for the current parameters."""
        r = self.correlation(model)
        trained = r if self.signed else r.abs()
        lam = self.lam
        if self.controller is not None:  # this step's r is the quality: not computed twice
            quality = trained.detach() if self.pass_r else None
            lam = self.controller.step(model, quality=quality)
        loss: torch.Tensor = -lam * trained
        return loss


@register_attack
@dataclass(frozen=True, kw_only=True)
class CorrelationAttack(Attack):
    """Correlated value encoding: a regularizer correlating the weights with the secret.

    Args:
        lam: Strength ``lambda_c`` of the correlation term, or ``"auto"`` (default):
            steered while training until ``|r|`` reaches ``target``, under an accuracy
            guard on a held-out slice of the training data
            (:mod:`covertml.attacks.strength`). A number is the paper's fixed term (its
            code's default: 1.0).
        polarity: ``pilot`` (paper's ``|r|`` term, sign and scale from a keyed pilot block)
            or ``signed`` (train ``-lam * r``).
        pilot: Size of the pilot block in carriers.
        scaling: How an image block is mapped back to 0-255: ``minmax`` (per image, the
            paper's) or ``pilot`` (the affine map fitted on the pilot block). Text always
            uses the pilot map.
        clip: With ``minmax``, map the ``clip``-th and ``(100 - clip)``-th percentile of
            each image block (rather than its min and max) to 0 and 255, so a few extreme
            weights do not compress the whole image's range (0 = the paper's min-max;
            default 2).
        target: The quality ``lam="auto"`` steers to: for images, 1 - the MAPE of the
            secret as the decoder would read it now, over 255 (default 0.895: a MAPE of
            26.8, under the 30 asked for); for text, the correlation ``|r|``.
        layout: Where the secret goes (:mod:`covertml.attacks.layout`): ``rows`` (one
            image per row of a first layer whose rows are image-shaped, nothing else
            touched), ``tail`` (the last tensors), ``flat`` (the paper's: every carrier
            in order) or ``auto`` (default): ``flat`` with a fixed ``lam``, else ``rows``
            where it applies and ``tail`` otherwise. Recorded in the key.
        share: Without ``--n-secrets``, the share of the layout's carriers the secret
            fills (at least one item); the rest stay free for the task. Default: 1 with
            a fixed ``lam`` (the paper's), else 0.25 (docs/ATTACK_STRENGTH.md).
    """

    name: ClassVar[str] = "correlation"
    threat: ClassVar = "white-box"

    lam: float | str = AUTO
    polarity: Literal["pilot", "signed"] = "pilot"
    pilot: int = 256
    scaling: Literal["minmax", "pilot"] = "minmax"
    clip: float = 2.0
    target: float = 0.895
    layout: str = "auto"
    share: float | None = None

    def __post_init__(self) -> None:
        lam = parse_lam(self.lam)
        object.__setattr__(self, "lam", AUTO if lam is None else lam)  # "5" -> 5.0
        if not 0 <= self.clip < 50:
            raise ConfigError(f"clip must be in [0, 50), got {self.clip}", fix="e.g. clip=2")
        if self.pilot < 0 or (self.polarity == "pilot" and self.pilot < 16):
            raise ConfigError("the pilot block must be at least 16 carriers", fix="e.g. pilot=256")
        if not 0 < self.target < 1:
            raise ConfigError(f"target must be in (0, 1), got {self.target}", fix="e.g. 0.9")
        if self.share is not None and not 0 < self.share <= 1:
            raise ConfigError(f"share must be in (0, 1], got {self.share}", fix="e.g. share=0.5")
        if self.layout not in LAYOUTS:
            raise ConfigError(
                f"unknown layout {self.layout!r}", fix=f"choose one of: {', '.join(LAYOUTS)}"
            )

    def plan(
        self, model: nn.Module, dataset: Dataset, *, n_secrets: int | None = None, seed: int = 0
    ) -> AttackPlan:
        """Chooses the secret and returns the correlation loss term."""
        cmap = CarrierMap.from_model(model)
        full = secret_from_dataset(dataset)
        lam = parse_lam(self.lam)
        asked = "flat" if self.layout == "auto" and lam is not None else self.layout
        name, room = choose_layout(
            cmap, kind=full.kind, item_size=full.size_of(1), pilot=self.pilot, layout=asked
        )
        after = ", after the pilot" if name != "rows" else ""
        where = f"{room:,} carriers ({name} layout{after})"
        if n_secrets is None:  # fill a share of the room, leaving the rest to the task
            share = (
                self.share if self.share is not None else (1.0 if lam is not None else AUTO_SHARE)
            )
            room = max(int(share * room), min(room, full.size_of(1)))
        secret = check_fits(full, n_secrets, room, what=where)
        layout = make_layout(name, cmap, pilot=self.pilot, secret=secret.values.size)
        pilot = pilot_symbols(self.pilot, secret.levels, seed)
        target = layout.stream(pilot, secret.values)
        signed = self.polarity == "signed"
        term = CorrelationLoss(
            cmap, target, lam=lam or 0.0, signed=signed, counts=layout.counts(cmap)
        )
        key = self.make_key(
            secret,
            carriers=cmap,
            seed=seed,
            model=model,
            dataset=dataset,
            settings={"layout": layout.to_dict()},
        )
        exclude: tuple[int, ...] = ()
        if lam is None:
            exclude, holdout = guard_slice(dataset, reserved=secret.count, seed=seed)
            quality: Callable[[nn.Module], float] = term.quality
            if secret.kind == "image":  # what the decoder will read, not a proxy for it
                truth = secret.values.astype(np.float64)

                def decoded(m: nn.Module) -> float:
                    decoded = self.decode(m, key).values
                    return 1.0 - float(np.abs(decoded - truth).mean()) / 255.0

                quality, term.pass_r = decoded, False
            term.controller = StrengthController(
                quality,
                target=self.target,
                start=1.0,  # the paper's code default; steered from there
                holdout=holdout,
            )
        return AttackPlan(
            secret,
            key,
            loss_terms=(term,),
            callbacks=(term.controller,) if term.controller is not None else (),
            exclude=exclude,
            rejoin_share=REJOIN_SHARE,
        )

    @classmethod
    def decode(cls, model: nn.Module, key: AttackKey) -> Secret:
        """Maps the carriers back to symbols (polarity and scale from the pilot block)."""
        assert key.carriers is not None
        s = key.settings
        n_pilot, levels = int(s["pilot"]), int(key.secret["levels"])
        n = Secret.spec_symbols(key.secret)
        layout = Layout.from_dict(s.get("layout"), pilot=n_pilot, secret=n)
        pilot_carriers, body = layout.split(key.carriers.read_numpy(model).astype(np.float64))
        slope, intercept = 1.0, 0.0
        if n_pilot:
            known = pilot_symbols(n_pilot, levels, key.seed).astype(np.float64)
            slope, intercept = np.polyfit(pilot_carriers, known, 1)
        if s["polarity"] == "signed":
            slope = abs(slope)
        template = Secret.from_spec(key.secret, np.zeros(n, np.int64))
        if template.kind == "image" and s.get("scaling", "minmax") == "minmax":
            blocks = body.reshape(template.count, -1) * np.sign(slope or 1.0)
            clip = float(s.get("clip", 0.0))
            lo = np.percentile(blocks, clip, axis=1, keepdims=True)
            hi = np.percentile(blocks, 100 - clip, axis=1, keepdims=True)
            values = np.round(255 * (blocks - lo) / np.maximum(hi - lo, 1e-12)).reshape(-1)
        else:
            values = np.round(slope * body + intercept)
        return template.with_values(np.clip(values, 0, levels - 1).astype(np.int64))
