"""The attacker's key: everything the decoder needs, kept apart from the released model.

Written as ``key.json`` by ``covertml train --attack ...``; read by ``covertml extract``.
Its fields are documented in ``docs/KEY_AND_PAYLOAD.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covertml.attacks.carriers import CarrierMap
from covertml.errors import CovertMLError
from covertml.paths import atomic_write_text

FORMAT = "covertml-key/1"


class KeyFileError(CovertMLError, ValueError):
    """The key file is missing, malformed, or does not fit the model."""


@dataclass(frozen=True)
class AttackKey:
    """What the adversary keeps.

    Attributes:
        attack: Registry name of the attack.
        settings: The attack's options (bits, lambda, passphrase, ...).
        secret: The secret's shape (:meth:`covertml.attacks.secrets.Secret.spec`).
        carriers: The carrier map (white-box attacks), else ``None``.
        seed: Seed of everything keyed (pilot block, synthetic inputs).
        architecture: The model architecture the key was made for.
        dataset: How the training data was loaded (name, limits), for scoring.
    """

    attack: str
    settings: dict[str, Any]
    secret: dict[str, Any]
    carriers: CarrierMap | None = None
    seed: int = 0
    architecture: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "format": FORMAT,
            "attack": self.attack,
            "settings": self.settings,
            "secret": self.secret,
            "carriers": self.carriers.to_dict() if self.carriers is not None else None,
            "seed": self.seed,
            "architecture": self.architecture,
            "dataset": self.dataset,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the key as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return Path(path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttackKey:
        """Parses :meth:`to_dict` output."""
        if data.get("format") != FORMAT:
            raise KeyFileError(
                f"not a covertml key (format {data.get('format')!r})",
                fix="pass the key.json written by covertml train --attack",
            )
        carriers = data.get("carriers")
        return cls(
            attack=str(data["attack"]),
            settings=dict(data["settings"]),
            secret=dict(data["secret"]),
            carriers=CarrierMap.from_dict(carriers) if carriers else None,
            seed=int(data.get("seed", 0)),
            architecture=dict(data.get("architecture") or {}),
            dataset=dict(data.get("dataset") or {}),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AttackKey:
        """Reads a key file, with one-line errors for missing or malformed files."""
        p = Path(path)
        if not p.is_file():
            raise KeyFileError(f"key file {p} does not exist", fix="check the --key path")
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, KeyFileError):
                raise
            raise KeyFileError(
                f"key file {p} is malformed ({type(exc).__name__}: {exc})",
                fix="pass the key.json written by covertml train --attack",
            ) from None
