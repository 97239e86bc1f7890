"""Capacity abuse under label errors, with training until learned, and its default m/n."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from covertml.attacks import create_attack
from covertml.attacks.capacity import decode_capacity
from covertml.attacks.labelcode import quantize
from covertml.attacks.oracle import FunctionOracle
from covertml.data import create_dataset
from covertml.models import create_model_for
from covertml.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


@pytest.mark.parametrize("share", [0.002, 0.01, 0.05])
def test_wrong_answers_spoil_only_the_groups_they_fall_in(digits, share) -> None:
    plan = create_attack("capacity").plan(create_model_for(digits), digits, n_secrets=6)
    truth = plan.extra_data.y
    code = plan.key.settings["code"]
    classes, group_bits, digits_per_group = code["classes"], code["bits"], code["digits"]
    rng = np.random.default_rng(int(share * 1000))
    flipped = np.sort(rng.choice(truth.size, size=max(1, int(share * truth.size)), replace=False))
    answers = truth.copy()
    answers[flipped] = (answers[flipped] + rng.integers(1, classes, flipped.size)) % classes
    replies = iter([answers])
    oracle = FunctionOracle(lambda x: next(replies), batch_size=10**6)
    got = quantize(decode_capacity(oracle, plan.key).values, 4)
    want = quantize(plan.secret.values, 4)
    wrong = set(np.flatnonzero(got != want).tolist())
    # the code's guarantee, computed here: a wrong label touches the symbols of its group
    spoilable: set[int] = set()
    for g in set((flipped // digits_per_group).tolist()):
        first, last = g * group_bits // 4, ((g + 1) * group_bits - 1) // 4
        spoilable |= set(range(first, last + 1))
    assert wrong <= spoilable
    groups = len(set((flipped // digits_per_group).tolist()))
    assert len(wrong) <= groups * (-(-group_bits // 4) + 1)
    assert len(wrong) > 0  # the flips did reach the secret


def test_training_goes_on_until_the_synthetic_labels_are_learned() -> None:
    calls = []

    def more() -> bool:
        calls.append(1)
        return len(calls) < 3  # asks twice, then is satisfied

    x = np.random.default_rng(0).integers(0, 255, (64, 4, 4, 1), dtype=np.uint8)
    from covertml.data.base import Split

    data = Split(x, np.arange(64) % 2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    result = Trainer(TrainConfig(epochs=2), extend_while=more, max_extra_epochs=5).fit(model, data)
    assert len(result.history) == 4 and len(calls) == 3
    bounded = Trainer(TrainConfig(epochs=2), extend_while=lambda: True, max_extra_epochs=3)
    assert len(bounded.fit(model, data).history) == 5


def test_default_m_fits_a_handful_of_whole_items(digits) -> None:
    model = create_model_for(digits)
    default = create_attack("capacity").plan(model, digits)
    assert default.secret.count >= 8
    assert default.max_extra_epochs == 10 and default.extend_while is not None
    half = create_attack("capacity", ratio=0.2).plan(model, digits)  # an explicit m/n rules
    assert int(half.key.settings["m"]) <= round(0.2 * len(digits.train))
    fixed = create_attack("capacity", learn_to=0).plan(model, digits)
    assert fixed.extend_while is None and fixed.max_extra_epochs == 0
