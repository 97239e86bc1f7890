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


def flip(truth: np.ndarray, share: float, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Oracle answers with a known share of wrong labels, and which ones."""
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(truth.size, size=max(1, int(share * truth.size)), replace=False))
    answers = truth.copy()
    answers[flipped] = (answers[flipped] + rng.integers(1, classes, flipped.size)) % classes
    return answers, flipped


def decoded_buckets(plan, answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    replies = iter([answers])
    oracle = FunctionOracle(lambda x: next(replies), batch_size=10**6)
    got = quantize(decode_capacity(oracle, plan.key).values, 4)
    return got, quantize(plan.secret.values, 4)


@pytest.mark.parametrize("share", [0.002, 0.01, 0.05])
def test_without_ecc_wrong_answers_spoil_only_their_groups(digits, share) -> None:
    plan = create_attack("capacity", ecc=0).plan(create_model_for(digits), digits, n_secrets=6)
    code = plan.key.settings["code"]
    classes, group_bits, digits_per_group = code["classes"], code["bits"], code["digits"]
    answers, flipped = flip(plan.extra_data.y, share, classes, int(share * 1000))
    got, want = decoded_buckets(plan, answers)
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


@pytest.mark.parametrize("share", [0.002, 0.006, 0.02, 0.05])
def test_reed_solomon_corrects_what_its_guarantee_says(digits, share) -> None:
    """16 parity bytes per 255 correct 8 wrong bytes; a wrong label garbles 2 bytes."""
    plan = create_attack("capacity").plan(create_model_for(digits), digits, n_secrets=20)
    code = plan.key.settings["code"]
    assert (code["bits"], code["digits"]) == (16, 5)
    answers, flipped = flip(plan.extra_data.y, share, code["classes"], int(share * 1000))
    got, want = decoded_buckets(plan, answers)
    data_bytes = want.size // 2  # two 4-bit symbols per byte
    coded_bytes = plan.extra_data.y.size // 5 * 2
    garbled = np.unique(np.concatenate([2 * (flipped // 5), 2 * (flipped // 5) + 1]))
    may_fail: set[int] = set()  # secret symbols that an uncorrectable codeword may spoil
    for j in range(-(-coded_bytes // 255)):
        hits = garbled[(garbled >= 255 * j) & (garbled < 255 * (j + 1))] - 255 * j
        if hits.size <= 8:
            continue  # within the code's power: every symbol of this codeword is exact
        data_len = min(239, data_bytes - 239 * j)
        for p in hits[hits < data_len]:
            may_fail |= {2 * (239 * j + int(p)), 2 * (239 * j + int(p)) + 1}
    wrong = set(np.flatnonzero(got != want).tolist())
    assert wrong <= may_fail
    if share <= 0.002:
        assert not wrong and flipped.size >= 3
    if share >= 0.05:
        assert wrong  # past the code's power, errors do show


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
    # computed here: 4 images x 64 pixels x 4 bits = 128 bytes, + 16 parity bytes = 144
    # bytes, 2 bytes in 5 labels of a 10-class model -> 360 synthetic inputs
    assert default.secret.count == 4 and default.key.settings["m"] == 144 // 2 * 5
    assert default.max_extra_epochs == 10 and default.extend_while is not None
    half = create_attack("capacity", ratio=0.2).plan(model, digits)  # an explicit m/n rules
    assert int(half.key.settings["m"]) <= round(0.2 * len(digits.train))
    fixed = create_attack("capacity", learn_to=0).plan(model, digits)
    assert fixed.extend_while is None and fixed.max_extra_epochs == 0


def test_the_handful_of_items_is_capped_in_m_over_n_but_one_item_always_fits(digits) -> None:
    from covertml.data.base import Dataset, Split

    parity = Dataset(  # a binary model: one bit per label, so whole items need many labels
        name="digits-parity",
        modality="image",
        classes=("even", "odd"),
        train=Split(digits.train.x, digits.train.y % 2),
        test=Split(digits.test.x, digits.test.y % 2),
    )
    model = create_model_for(parity, "mlp")
    n = len(parity.train)
    capped = create_attack("capacity", min_items=8, max_ratio=1.2).plan(model, parity)
    # computed here: 1.2 n labels = 1,724 bits = 215 bytes, of which 199 are data after 16
    # parity bytes; an item is 64 pixels x 4 bits = 32 bytes, so 6 items
    assert capped.secret.count == (215 - 16) // 32 == 6
    assert capped.key.settings["m"] <= 1.2 * n
    # the default handful: 4 items x 32 bytes + 16 parity = 144 bytes = 1,152 labels
    handful = create_attack("capacity").plan(model, parity)
    assert handful.secret.count == 4 and handful.key.settings["m"] == (4 * 32 + 16) * 8
    floor = create_attack("capacity", max_ratio=0.01).plan(model, parity)  # one item still
    assert floor.secret.count == 1 and floor.key.settings["m"] == (32 + 16) * 8
    small = Dataset(  # 100 training items: one whole item needs more labels than that
        name="digits-parity",
        modality="image",
        classes=("even", "odd"),
        train=Split(digits.train.x[:100], digits.train.y[:100] % 2),
        test=parity.test,
    )
    one = create_attack("capacity", max_ratio=1.0).plan(model, small)
    assert one.secret.count == 1 and one.key.settings["m"] == (32 + 16) * 8
