"""DP-SGD training (opacus): the countermeasure to capacity abuse when the trainer is trusted.

Differentially private SGD clips every example's gradient to ``max_grad_norm`` and adds
Gaussian noise of ``noise_multiplier`` x that norm to each batch's sum, so no single
training example -- and no single synthetic input of a poisoned data set -- can move the
model far. The privacy spent is reported as (epsilon, delta) by opacus's RDP accountant.
Install with ``pip install 'covertml[dp]'``.

Example:
    >>> from covertml.data import create_dataset
    >>> from covertml.models import create_model_for
    >>> from covertml.training import Trainer, TrainConfig
    >>> ds = create_dataset("digits", train_limit=256, test_limit=64)
    >>> dp = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0)
    >>> _ = Trainer(TrainConfig(epochs=1), privacy=dp).fit(create_model_for(ds), ds.train)
    >>> 0 < dp.spent()["epsilon"] < 100
    True
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from covertml.errors import ConfigError

log = logging.getLogger(__name__)


class DPSGD:
    """DP-SGD settings, and the accountant once attached to a training run.

    Args:
        noise_multiplier: Noise std over the clipping norm (ignored with ``target_epsilon``).
        max_grad_norm: Per-example gradient clipping norm.
        delta: The delta of the (epsilon, delta) guarantee.
        target_epsilon: Choose the noise so that training spends exactly this epsilon.
    """

    def __init__(
        self,
        *,
        noise_multiplier: float = 1.0,
        max_grad_norm: float = 1.0,
        delta: float = 1e-5,
        target_epsilon: float | None = None,
    ) -> None:
        if noise_multiplier < 0 or max_grad_norm <= 0 or not 0 < delta < 1:
            raise ConfigError(
                "DP-SGD needs noise_multiplier >= 0, max_grad_norm > 0 and 0 < delta < 1",
                fix="e.g. --dp-noise 1.0 --dp-clip 1.0",
            )
        if target_epsilon is not None and target_epsilon <= 0:
            raise ConfigError(f"target epsilon must be > 0, got {target_epsilon}", fix="e.g. 8")
        self.noise_multiplier = noise_multiplier
        self.max_grad_norm = max_grad_norm
        self.delta = delta
        self.target_epsilon = target_epsilon
        self._engine: Any = None
        self._optimizer: Any = None

    def attach(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loader: DataLoader[Any],
        *,
        epochs: int,
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader[Any]]:
        """Wraps a training run's model, optimizer and loader for DP-SGD."""
        try:
            from opacus import PrivacyEngine
            from opacus.validators import ModuleValidator
        except ImportError:
            raise ConfigError(
                "DP-SGD needs the optional opacus package",
                fix="pip install 'covertml[dp]'",
            ) from None
        problems = ModuleValidator.validate(model, strict=False)
        if problems:
            raise ConfigError(
                f"DP-SGD cannot train this model: {str(problems[0]).splitlines()[0]}",
                fix="use a model without batch norm (e.g. --model mlp)",
            )
        for module in model.modules():  # opacus's hooks cannot see through in-place ops
            if getattr(module, "inplace", False):
                module.inplace = False  # type: ignore[assignment]
        engine = PrivacyEngine(accountant="rdp")
        common = {"module": model, "optimizer": optimizer, "data_loader": loader}
        try:
            if self.target_epsilon is not None:
                wrapped = engine.make_private_with_epsilon(
                    **common,
                    target_epsilon=self.target_epsilon,
                    target_delta=self.delta,
                    epochs=epochs,
                    max_grad_norm=self.max_grad_norm,
                )
            else:
                wrapped = engine.make_private(
                    **common,
                    noise_multiplier=self.noise_multiplier,
                    max_grad_norm=self.max_grad_norm,
                )
        except NotImplementedError as exc:
            raise ConfigError(
                f"DP-SGD cannot compute per-example gradients here ({exc})",
                fix="use a model built from standard layers (e.g. --model mlp)",
            ) from None
        self._engine, self._optimizer = engine, wrapped[1]
        log.info(
            "DP-SGD: noise multiplier %.3f, clip %.3g",
            wrapped[1].noise_multiplier,
            self.max_grad_norm,
        )
        return wrapped  # type: ignore[no-any-return]

    def spent(self) -> dict[str, float]:
        """The privacy spent so far: epsilon at ``delta``, and the settings used."""
        if self._engine is None:
            raise ConfigError("DP-SGD was not attached to a training run", fix="train first")
        return {
            "epsilon": float(self._engine.get_epsilon(self.delta)),
            "delta": self.delta,
            "noise_multiplier": float(self._optimizer.noise_multiplier),
            "max_grad_norm": self.max_grad_norm,
        }
