"""Attacks: white-box (LSB, correlated value, sign) and black-box (capacity abuse), with decoders.

Example:
    >>> from covertml.attacks import create_attack, list_attacks
    >>> {"lsb", "correlation", "sign", "capacity"} <= set(list_attacks())
    True
"""

from covertml.attacks import capacity, correlation, lsb, sign  # noqa: F401  (registers attacks)
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
from covertml.attacks.capacity import CapacityAttack, decode_capacity, synthetic_inputs
from covertml.attacks.carriers import CarrierMap
from covertml.attacks.correlation import CorrelationAttack, CorrelationLoss
from covertml.attacks.key import AttackKey, KeyFileError
from covertml.attacks.lsb import LSBAttack
from covertml.attacks.oracle import FunctionOracle, LabelOracle, LocalOracle
from covertml.attacks.payload import PayloadError, WrongKeyError
from covertml.attacks.secrets import Secret, grayscale, secret_from_dataset
from covertml.attacks.sign import SignAttack
from covertml.attacks.sign_loss import SignLoss

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackKey",
    "AttackPlan",
    "CapacityAttack",
    "CarrierMap",
    "CorrelationAttack",
    "CorrelationLoss",
    "FunctionOracle",
    "KeyFileError",
    "LSBAttack",
    "LabelOracle",
    "LocalOracle",
    "PayloadError",
    "Secret",
    "SignAttack",
    "SignLoss",
    "WrongKeyError",
    "attack_options",
    "create_attack",
    "decode_capacity",
    "decode_secret",
    "grayscale",
    "list_attacks",
    "register_attack",
    "secret_from_dataset",
    "synthetic_inputs",
]
