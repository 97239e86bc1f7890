"""Attacks: white-box (LSB, correlated value, sign) encoders and their decoders.

Example:
    >>> from covertml.attacks import create_attack, list_attacks
    >>> {"lsb", "correlation", "sign"} <= set(list_attacks())
    True
"""

from covertml.attacks import correlation, lsb, sign  # noqa: F401  (registers attacks)
from covertml.attacks.base import (
    ATTACKS,
    Attack,
    AttackPlan,
    attack_options,
    create_attack,
    decode_secret,
    list_attacks,
    register_attack,
)
from covertml.attacks.carriers import CarrierMap
from covertml.attacks.correlation import CorrelationAttack, CorrelationLoss
from covertml.attacks.key import AttackKey, KeyFileError
from covertml.attacks.lsb import LSBAttack
from covertml.attacks.payload import PayloadError, WrongKeyError
from covertml.attacks.secrets import Secret, grayscale, secret_from_dataset
from covertml.attacks.sign import SignAttack, SignLoss

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackKey",
    "AttackPlan",
    "CarrierMap",
    "CorrelationAttack",
    "CorrelationLoss",
    "KeyFileError",
    "LSBAttack",
    "PayloadError",
    "Secret",
    "SignAttack",
    "SignLoss",
    "WrongKeyError",
    "attack_options",
    "create_attack",
    "decode_secret",
    "grayscale",
    "list_attacks",
    "register_attack",
    "secret_from_dataset",
]
