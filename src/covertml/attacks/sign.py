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
from torch import nn

from covertml.attacks.base import (
    Attack,
    AttackPlan,
    bits_to_symbols,
    register_attack,
    symbols_to_bits,
)
from covertml.attacks.carriers import CarrierMap
from covertml.attacks.key import AttackKey
from covertml.attacks.layout import Layout, column_positions, make_layout
from covertml.attacks.secrets import Secret, check_fits, secret_from_dataset
from covertml.attacks.sign_loss import SignLoss, Where, bit_weights, carrier_values, symbol_quality
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

AUTO_START = 10.0  # the paper's lower strength; the controller goes on from there


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
            to the symbol range for images (default 0.975, a MAPE of at most 6.4), the share
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
        controller = None
        exclude: tuple[int, ...] = ()
        if lam is None:
            exclude, holdout = guard_slice(dataset, reserved=secret.count, seed=seed)
            controller = StrengthController(
                lambda m: symbol_quality(m, cmap, bits, bps, image=image, layout=where),
                target=self.target or (0.975 if image else 0.96),
                start=AUTO_START,
                holdout=holdout,
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
            exclude=exclude,
            rejoin_share=REJOIN_SHARE,
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
