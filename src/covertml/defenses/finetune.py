"""Fine-tuning sanitizer: a few epochs of honest training on the owner's own data."""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from covertml.data.base import Dataset
from covertml.defenses.base import Sanitizer, register_sanitizer
from covertml.errors import ConfigError
from covertml.training.config import TrainConfig

log = logging.getLogger(__name__)

#: The usual learning rate of each optimizer (fine-tuning takes a tenth of it by default).
USUAL_LR = {"sgd": 0.1, "adam": 1e-3}


@register_sanitizer
@dataclasses.dataclass(frozen=True, kw_only=True)
class FineTune(Sanitizer):
    """Trains ``epochs`` more epochs honestly on the owner's data (the reference trainer).

    The dataset's recipe is used with a constant learning rate of ``lr`` (default: a tenth
    of the recipe's), so the model moves away from whatever the malicious code steered it
    to without forgetting its task. ``optimizer`` overrides the recipe's (``sgd`` or
    ``adam``): fine-tune with the optimizer the model was trained with. ``device``: where
    to train (``auto``: CUDA when present); the sanitized copy comes back on the CPU.

    Example:
        >>> from covertml.data import create_dataset
        >>> from covertml.models import create_model_for
        >>> ds = create_dataset("digits", train_limit=200)
        >>> model = create_model_for(ds)
        >>> clean = FineTune(epochs=1).sanitize(model, dataset=ds)
        >>> clean is model
        False
    """

    name: ClassVar[str] = "finetune"
    needs_data: ClassVar[bool] = True

    epochs: int = 2
    lr: float | None = None
    optimizer: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 1 or (self.lr is not None and self.lr <= 0):
            raise ConfigError("epochs must be >= 1 and lr > 0", fix="e.g. epochs=2")
        if self.optimizer not in (None, "sgd", "adam"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}", fix="use sgd or adam")

    def config_for(self, dataset: str, *, seed: int = 0) -> TrainConfig:
        """The fine-tuning recipe: the dataset's, at a tenth of the learning rate.

        With ``optimizer`` other than the recipe's, the tenth is of that optimizer's usual
        rate (SGD 0.1, Adam 1e-3): a tenth of CIFAR-10's SGD rate would wreck an Adam model.

        Example:
            >>> FineTune(optimizer="adam").config_for("cifar10").lr
            0.0001
        """
        from covertml.training import recipe

        own = recipe(dataset)
        base_lr = own.lr if self.optimizer in (None, own.optimizer) else USUAL_LR[self.optimizer]
        return recipe(
            dataset,
            optimizer=self.optimizer,
            epochs=self.epochs,
            lr=self.lr or base_lr / 10,
            schedule="constant",
            seed=seed,
            device=self.device,
        )

    def transform(self, tensor: torch.Tensor, *, rng: np.random.Generator) -> torch.Tensor:
        """Not used: fine-tuning retrains the whole model (see :meth:`sanitize`)."""
        raise ConfigError("finetune retrains the whole model", fix="call sanitize(model, ...)")

    def sanitize(
        self, model: nn.Module, *, seed: int = 0, dataset: Dataset | None = None
    ) -> nn.Module:
        """A copy of ``model`` after ``epochs`` epochs of honest training on ``dataset``."""
        from covertml.training import Trainer

        if dataset is None:
            raise ConfigError(
                "finetune needs the owner's training data",
                fix="pass dataset=... (CLI: --dataset NAME [--data-dir DIR])",
            )
        config = self.config_for(dataset.name, seed=seed)
        clean = copy.deepcopy(model)
        result = Trainer(config).fit(clean, dataset.train)
        log.info("fine-tuned %d epochs in %.1f s", self.epochs, result.seconds)
        return clean.eval()
