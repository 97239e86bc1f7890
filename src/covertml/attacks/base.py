"""What every attack provides, and the attack registry.

An attack is a small frozen dataclass of keyword-only options. :meth:`Attack.plan` looks at
the model and the training data the malicious code is handed and returns an
:class:`AttackPlan`: the secret it will steal, the trainer hooks that steal it, and the
adversary's :class:`~covertml.attacks.key.AttackKey`. :meth:`Attack.decode` is the
adversary's side: from the released model and the key alone, it recovers the secret.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import nn

from covertml.attacks.key import AttackKey
from covertml.attacks.secrets import Secret
from covertml.data.base import Dataset, Split
from covertml.registry import Registry
from covertml.training.config import TrainConfig
from covertml.training.trainer import Callback, LossTerm, PostStep, Trainer

Threat = Literal["white-box", "black-box"]


@dataclass(frozen=True, eq=False)
class AttackPlan:
    """A prepared attack: the secret, the trainer hooks and the key.

    Use :meth:`trainer` to get a :class:`~covertml.training.Trainer` that trains with the
    hooks, or plug ``loss_terms`` / ``extra_data`` / ``post_steps`` into your own loop.
    """

    secret: Secret
    key: AttackKey
    loss_terms: tuple[LossTerm, ...] = ()
    post_steps: tuple[PostStep, ...] = ()
    extra_data: Split | None = None
    callbacks: tuple[Callback, ...] = ()
    #: The float format the model is released in (saved so by covertml's pipelines).
    release_dtype: str = "float32"
    #: Training items the attack keeps out of training (its own validation slice).
    exclude: tuple[int, ...] = ()
    #: Share of the configured epochs after which those items rejoin training (``None``:
    #: kept out throughout).
    rejoin_share: float | None = None
    #: Keep training past the configured epochs while this returns True...
    extend_while: Callable[[], bool] | None = None
    #: ...for at most this many epochs.
    max_extra_epochs: int = 0

    def exclude_epochs(self, config: TrainConfig) -> int | None:
        """After how many of ``config``'s epochs the excluded items rejoin (``None``: never)."""
        if not self.exclude or self.rejoin_share is None:
            return None
        return max(1, math.ceil(self.rejoin_share * config.epochs))

    def trainer(self, config: TrainConfig, *, progress: bool = False) -> Trainer:
        """A trainer that runs this attack during (and after) training."""
        return Trainer(
            config,
            loss_terms=self.loss_terms,
            extra_data=self.extra_data,
            post_steps=self.post_steps,
            callbacks=self.callbacks,
            progress=progress,
            exclude=self.exclude,
            exclude_epochs=self.exclude_epochs(config),
            extend_while=self.extend_while,
            max_extra_epochs=self.max_extra_epochs,
        )


class Attack(ABC):
    """Base class of the attacks (subclasses are frozen dataclasses)."""

    name: ClassVar[str]
    threat: ClassVar[Threat]
    #: Training itself is honest; the secret is written afterwards (``post_steps`` only),
    #: so an honestly trained model of the same seed can carry it (the runner reuses one).
    trains_honestly: ClassVar[bool] = False

    @abstractmethod
    def plan(
        self, model: nn.Module, dataset: Dataset, *, n_secrets: int | None = None, seed: int = 0
    ) -> AttackPlan:
        """Prepares the attack for ``model`` trained on ``dataset``.

        Args:
            model: The freshly built model the training code will train.
            dataset: The training data handed to the training code.
            n_secrets: Items to steal (default: as many as fit).
            seed: Seed of every keyed choice.
        """

    @classmethod
    @abstractmethod
    def decode(cls, model: nn.Module, key: AttackKey) -> Secret:
        """Recovers the secret from a released ``model`` and the adversary's ``key``."""

    def options(self) -> dict[str, Any]:
        """The attack's options (stored in the key)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    def make_key(
        self,
        secret: Secret,
        *,
        carriers: Any = None,
        seed: int,
        model: nn.Module,
        dataset: Dataset,
        settings: dict[str, Any] | None = None,
    ) -> AttackKey:
        """Builds this attack's key."""
        from covertml.models.registry import model_spec

        try:
            arch = model_spec(model).to_dict()
        except ValueError:
            arch = {"name": type(model).__name__, "args": {}}
        return AttackKey(
            attack=self.name,
            settings={**self.options(), **(settings or {})},
            secret=secret.spec(),
            carriers=carriers,
            seed=seed,
            architecture=arch,
            dataset={"name": dataset.name},
        )


ATTACKS: Registry[Attack] = Registry("attack")


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator registering an attack under ``cls.name``."""
    return ATTACKS.register_class(cls, threat=cls.threat)


def list_attacks() -> list[str]:
    """Registered attack names."""
    return ATTACKS.names()


def attack_options(name: str) -> list[str]:
    """The option names attack ``name`` accepts."""
    return ATTACKS.option_names(name)


def create_attack(name: str, **options: Any) -> Attack:
    """Builds attack ``name`` with ``options`` (unknown options are a clear error).

    Example:
        >>> create_attack("sign", lam=10.0).options()["lam"]
        10.0
    """
    return ATTACKS.create_checked(name, **options)


def decode_secret(model: nn.Module, key: AttackKey) -> Secret:
    """Recovers the secret with the attack named in ``key``."""
    cls: type[Attack] = ATTACKS.get(key.attack).meta["cls"]
    return cls.decode(model, key)


def symbols_to_bits(values: Sequence[int] | Any, bits_per_symbol: int) -> Any:
    """``uint8`` 0/1 array of each symbol's bits, most significant first.

    Example:
        >>> import numpy as np
        >>> symbols_to_bits(np.array([5]), 4).tolist()
        [0, 1, 0, 1]
    """
    import numpy as np

    v = np.asarray(values, dtype=np.int64)
    shifts = np.arange(bits_per_symbol - 1, -1, -1, dtype=np.int64)
    return ((v[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)


def bits_to_symbols(bits: Any, bits_per_symbol: int) -> Any:
    """Inverse of :func:`symbols_to_bits`.

    Example:
        >>> import numpy as np
        >>> bits_to_symbols(np.array([0, 1, 0, 1]), 4).tolist()
        [5]
    """
    import numpy as np

    b = np.asarray(bits, dtype=np.int64).reshape(-1, bits_per_symbol)
    weights = 1 << np.arange(bits_per_symbol - 1, -1, -1, dtype=np.int64)
    return b @ weights
