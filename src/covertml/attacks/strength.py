"""Attack strength that calibrates itself while the model trains (``lam="auto"``).

A fixed ``lambda`` means one thing for a ResNet trained 100 epochs on CIFAR-10 and another
for an MLP trained 10 epochs on 6,000 images. The malicious training code knows its own
secret, so it can measure how well the secret is encoded as it goes (the correlation
reached, the share of right signs) and steer ``lambda`` to a quality target:

- every few steps, ``lambda`` grows while the quality is below the target (at a rate of
  ``gain`` per epoch) unless the quality's own trend reaches the target soon, and shrinks
  once it is above (``relax`` per epoch, faster for a large overshoot) -- rates per epoch,
  not per step, so a run of 30 steps an epoch moves as far as one of 300; it settles near
  the smallest strength that holds the target;
- after every epoch, the accuracy on a slice of the training data held out from training
  (the attacker's own validation set) is compared with the best seen so far; a drop of more
  than ``tolerance`` two epochs in a row halves ``lambda`` and caps it there for the rest
  of the run;
- where the training set has fewer than ``MIN_PER_CLASS`` items a class, nothing is held
  out (a tenth of such data costs the task more than the attack does) and the guard is off;
- the held-out slice guards the first half of the configured epochs, where the strength
  ramps up from its start; then it rejoins training (an underfit model on a small set
  misses 10% of its data: LFW identity lost 9 points to it, docs/RESULTS.md), and
  ``lambda`` stays capped at ``rejoin_cap`` times the highest strength of the guarded
  half for the rest of the run.

The schedule (``lambda``, quality and held-out accuracy per epoch) is returned as epoch
metrics, so ``metrics.json`` records it.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from covertml.data.base import Dataset, Split
from covertml.errors import ConfigError
from covertml.training.evaluate import accuracy_on

log = logging.getLogger(__name__)

AUTO = "auto"
AUTO_SHARE = 0.25  # of the carriers a secret fills with lam="auto" and no --n-secrets
REJOIN_SHARE = 0.5  # of the configured epochs after which the held-out slice rejoins
MIN_PER_CLASS = 100  # training items per class below which no slice is held out
Quality = Callable[[nn.Module], float]


def parse_lam(value: float | str, *, name: str = "lam") -> float | None:
    """``None`` for ``"auto"``, else the fixed strength as a float (a clear error if neither).

    Example:
        >>> parse_lam("auto"), parse_lam("5"), parse_lam(2)
        (None, 5.0, 2.0)
    """
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return None
    try:
        lam = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be a number or 'auto', got {value!r}", fix=f"e.g. --{name} auto"
        ) from None
    if not math.isfinite(lam) or lam < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}", fix=f"e.g. --{name} auto")
    return lam


def holdout_indices(
    n_train: int, *, reserved: int, seed: int, share: float = 0.1, classes: int = 1
) -> np.ndarray:
    """The attacker's validation slice: ``share`` of the training items (at most 1,000).

    Drawn, with ``seed``, from the items after the first ``reserved`` (the secret's). None
    (an empty slice: no accuracy guard) where the training set has fewer than
    ``MIN_PER_CLASS`` items per class of its ``classes``: there, a tenth of the data is a
    loss the task feels (LFW identity, 39 faces a class, lost 9 points to it,
    docs/RESULTS.md), and a slice of a few hundred items resolves only a large drop.

    Example:
        >>> idx = holdout_indices(1000, reserved=100, seed=0)
        >>> len(idx), bool(idx.min() >= 100)
        (100, True)
        >>> len(holdout_indices(2421, reserved=9, seed=0, classes=62))  # 39 a class
        0
    """
    pool = np.arange(reserved, n_train)
    k = min(len(pool), 1000, max(1, round(share * n_train)))
    if len(pool) < 20 or k < 20 or n_train < MIN_PER_CLASS * max(classes, 1):
        return np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, 0x57E6])
    return np.sort(rng.choice(pool, size=k, replace=False)).astype(np.int64)


def guard_slice(
    dataset: Dataset, *, reserved: int, seed: int
) -> tuple[tuple[int, ...], Split | None]:
    """The ``lam="auto"`` guard's held-out indices and the split they select (``None``: none).

    Example:
        >>> from covertml.data import create_dataset
        >>> exclude, holdout = guard_slice(create_dataset("digits"), reserved=10, seed=0)
        >>> len(exclude) == len(holdout) == 144
        True
    """
    idx = holdout_indices(
        len(dataset.train), reserved=reserved, seed=seed, classes=dataset.num_classes
    )
    return tuple(int(i) for i in idx), (dataset.train.take(idx) if len(idx) else None)


@dataclass
class StrengthController:
    """Steers ``lam`` to a quality target under an accuracy guard (see the module).

    Args:
        quality: The encoding quality of a model now (higher is better).
        target: The quality to reach.
        start: The first ``lam``.
        holdout: Training items kept out of training, for the accuracy guard.
        every: Steps between two quality measurements.
        gain: Factor by which ``lam`` grows over one epoch spent below the target.
        relax: Factor by which it shrinks over one epoch spent above it.
        steps_per_epoch: Assumed until the first epoch ends (then measured).
        band: Below the target by less than this, the growth slows in proportion
            (0: full speed up to the target).
        horizon: Below the target, ``lam`` is held while the quality's trend over the
            last epoch would reach the target within this many epochs (it rises by
            itself at this strength; growing it would overshoot).
        overshoot: Above the target, ``lam`` shrinks ``1 + overshoot * excess / band``
            times as fast, so an overshoot -- the quality lags the strength -- does not
            leave a strength far above what the target needs for the rest of the run.
        tolerance: Held-out accuracy drop (absolute) that halves and caps ``lam`` when
            it lasts two epochs in a row; at least 2.5 standard errors of the held-out
            accuracy, so that sampling noise on a small slice does not trigger it.
        lam_min: Floor (default: ``start / 100``; a strength far below the start that
            held the target is as good as none, and climbing back from it takes epochs).
        lam_max: Ceiling.
        rejoin_cap: Once the held-out slice rejoins training, ``lam`` stays below this
            many times the highest strength of the guarded epochs.

    Example:
        >>> c = StrengthController(lambda m: 0.5, target=0.9, start=1.0, every=1,
        ...                        steps_per_epoch=10)  # fmt: skip
        >>> _ = [c.step(nn.Linear(1, 1)) for _ in range(10)]  # one epoch below the target
        >>> round(c.lam, 3)
        2.5
    """

    quality: Quality
    target: float
    start: float
    holdout: Split | None = None
    every: int = 4
    gain: float = 2.5
    relax: float = 0.85
    steps_per_epoch: int = 100
    band: float = 0.1
    overshoot: float = 5.0
    horizon: float = 2.0
    tolerance: float = 0.01
    lam_min: float | None = None
    lam_max: float = 1e4
    rejoin_cap: float = 2.0
    lam: float = field(init=False)
    last_quality: float = field(init=False, default=float("nan"))
    schedule: list[dict[str, Any]] = field(init=False, default_factory=list)
    _steps: int = field(init=False, default=0)
    _recent: deque[tuple[int, float]] = field(init=False, default_factory=deque)
    _best: float = field(init=False, default=-1.0)
    _cap: float = field(init=False, default=math.inf)
    _low: int = field(init=False, default=0)
    _peak: float = field(init=False, default=0.0)
    _rejoined: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.lam = self.start

    def step(self, model: nn.Module, *, quality: float | torch.Tensor | None = None) -> float:
        """Called once per training step; returns the strength to use for it.

        ``quality``: the quality now, where the caller has it already (else measured); a
        tensor is read only on the steps that measure (no device sync on the others).
        """
        self._steps += 1
        if self._steps % self.every == 0:
            q = float(self.quality(model)) if quality is None else float(quality)
            self.last_quality = q
            share = self.every / max(self.steps_per_epoch, 1)  # of an epoch, per measurement
            self._recent.append((self._steps, q))
            while len(self._recent) > max(2, self.steps_per_epoch // self.every):
                self._recent.popleft()  # about the last epoch of measurements
            if q < self.target:  # full speed when far below, slower on the approach
                gap = self.target - q
                share *= min(1.0, gap / self.band) if self.band > 0 else 1.0
                if gap <= self.horizon * self.trend():
                    share = 0.0  # on course to the target at this strength: hold it
            else:  # an overshoot (quality lags lam) is undone faster the larger it is
                share *= 1.0 + self.overshoot * (q - self.target) / max(self.band, 1e-9)
            factor = (self.gain if q < self.target else self.relax) ** share
            self.lam = min(max(self.lam * factor, self.floor), self.lam_max, self._cap)
            self._peak = max(self._peak, self.lam)
        return self.lam

    @property
    def floor(self) -> float:
        """The smallest ``lam`` the controller goes to."""
        return self.start / 100 if self.lam_min is None else self.lam_min

    def trend(self) -> float:
        """The quality's rise per epoch over the recent measurements (0 if unknown)."""
        if len(self._recent) < 2:
            return 0.0
        (s0, q0), (s1, q1) = self._recent[0], self._recent[-1]
        return (q1 - q0) * max(self.steps_per_epoch, 1) / (s1 - s0)

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, float]:
        """The epoch callback: the accuracy guard, and the epoch's schedule entry."""
        if epoch == 1 and self._steps:
            self.steps_per_epoch = self._steps
        entry: dict[str, Any] = {"epoch": epoch, "lam": self.lam}
        entry["quality"] = float(self.quality(model))
        if self.holdout is not None and len(self.holdout) and not self._rejoined:
            acc = accuracy_on(model, self.holdout)
            entry["holdout_accuracy"] = acc
            n, best = len(self.holdout), self._best
            noise = 2.5 * math.sqrt(max(best * (1 - best), 1.0 / n) / n)
            low = best >= 0 and acc < best - max(self.tolerance, noise)
            self._low = self._low + 1 if low else 0
            if self._low >= 2:  # a fall that lasts, not one noisy epoch
                self._low = 0
                self._cap = max(self.lam / 2, self.floor)
                self.lam = self._cap
                entry["backed_off_to"] = self.lam
                log.info("epoch %d: held-out accuracy fell to %.4f; lam capped at %.3g",
                         epoch, acc, self.lam)  # fmt: skip
            self._best = max(self._best, acc)
        self.schedule.append(entry)
        return {f"auto_{k}": float(v) for k, v in entry.items() if k != "epoch"}

    def rejoined(self, epoch: int) -> None:
        """The held-out slice is trained on from now on: the guard ends, ``lam`` is capped."""
        self._rejoined = True
        self._cap = min(self._cap, self.rejoin_cap * max(self._peak, self.lam))
        self.lam = min(self.lam, self._cap)
        if self.schedule and self.schedule[-1]["epoch"] == epoch:
            self.schedule[-1]["holdout_rejoins"] = True
        log.info("epoch %d: the held-out slice rejoins training; lam capped at %.3g",
                 epoch, self._cap)  # fmt: skip
