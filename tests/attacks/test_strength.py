"""Self-calibrating attack strength (``lam="auto"``) and the fixed-``lam`` paper terms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from covertml.attacks import create_attack, decode_secret
from covertml.attacks.carriers import CarrierMap
from covertml.attacks.score import score_recovery
from covertml.attacks.strength import StrengthController, holdout_indices, parse_lam
from covertml.data import create_dataset
from covertml.data.base import Split
from covertml.errors import ConfigError
from covertml.models import create_model_for
from covertml.training import Trainer, recipe, seed_everything
from covertml.training.evaluate import accuracy_on


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


def attacked(digits, name: str, seed: int = 0, **opts):
    seed_everything(seed)
    model = create_model_for(digits)
    plan = create_attack(name, **opts).plan(model, digits, seed=seed)
    result = plan.trainer(recipe("digits", seed=seed)).fit(model, digits.train)
    scores = score_recovery(plan.secret, decode_secret(model, plan.key))
    return plan, result, scores, accuracy_on(model, digits.test)


def honest(digits, seed: int) -> float:
    seed_everything(seed)
    model = create_model_for(digits)
    Trainer(recipe("digits", seed=seed)).fit(model, digits.train)
    return accuracy_on(model, digits.test)


@pytest.mark.parametrize(("name", "mape"), [("sign", 10.0), ("correlation", 30.0)])
def test_auto_strength_reaches_its_target_on_digits(digits, name, mape) -> None:
    deltas = []
    for seed in (0, 1):  # one digits test accuracy has a standard error of ~0.9 points
        plan, result, scores, acc = attacked(digits, name, seed)
        controller = plan.callbacks[0]
        assert isinstance(controller, StrengthController)
        assert controller.last_quality >= controller.target - 0.02
        assert scores.mape is not None and scores.mape <= mape
        deltas.append(acc - honest(digits, seed))
        # the schedule is in the history, epoch by epoch, and the slice was held out
        lams = [e.extra["auto_lam"] for e in result.history]
        assert len(lams) == len(result.history) and len(set(lams)) > 1
        assert len(plan.exclude) == len(set(plan.exclude)) > 100
        assert min(plan.exclude) >= plan.secret.count
    assert np.mean(deltas) >= -0.01


def test_fixed_lam_is_the_papers_term(digits) -> None:
    model = create_model_for(digits)
    sign = create_attack("sign", lam="50").plan(model, digits)
    corr = create_attack("correlation", lam=3.0).plan(model, digits)
    for plan in (sign, corr):
        assert plan.callbacks == () and plan.exclude == ()
    assert sign.key.settings["lam"] == 50.0
    # sign: lam * mean(max(0, -theta * s)) with uniform weights, computed here by hand
    n_bits = plan_bits = sign.secret.values.size * 8
    theta = CarrierMap.from_model(model).read_numpy(model)[:n_bits].astype(np.float64)
    bits = np.unpackbits(sign.secret.values.astype(np.uint8))[:plan_bits]
    s = bits * 2.0 - 1
    expected = 50.0 * np.maximum(0, -theta * s).mean()
    assert float(sign.loss_terms[0](model).detach()) == pytest.approx(expected, rel=1e-4)
    # correlation: -lam * |pearson(theta, pilot + secret)|
    term = corr.loss_terms[0]
    n = term.get_buffer("target").numel()
    theta = CarrierMap.from_model(model).read_numpy(model)[:n].astype(np.float64)
    r = np.corrcoef(theta, term.get_buffer("target").numpy().astype(np.float64))[0, 1]
    assert float(term(model).detach()) == pytest.approx(-3.0 * abs(r), rel=1e-4)


def test_controller_climbs_below_target_relaxes_above_and_backs_off_on_a_real_drop() -> None:
    quality = {"q": 0.2}
    c = StrengthController(lambda m: quality["q"], target=0.9, start=1.0, every=2, gain=3.0,
                           relax=0.5, steps_per_epoch=10)  # fmt: skip
    model = nn.Linear(1, 1)
    for _ in range(10):  # one epoch below the target: x gain
        c.step(model)
    assert c.lam == pytest.approx(3.0)
    quality["q"] = 0.95
    for _ in range(20):  # two epochs 0.05 above: x relax**2, 1 + 5 * 0.05 / 0.1 times as fast
        c.step(model)
    assert c.lam == pytest.approx(3.0 * 0.5 ** (2 * 3.5))
    for _ in range(200):  # never below the floor, start / 100
        c.step(model)
    assert c.lam == pytest.approx(0.01)

    # below the target but rising by itself fast enough to reach it within 2 epochs: held
    rising = StrengthController(lambda m: 0.0, target=0.9, start=1.0, every=1, steps_per_epoch=10)
    for i in range(10):
        rising.step(model, quality=0.5 + 0.03 * i)  # +0.3 an epoch, 0.13 short at the end
    assert rising.lam == pytest.approx(2.5 ** (1 / 10))  # grew on the first step only
    slow = StrengthController(lambda m: 0.0, target=0.9, start=1.0, every=1, steps_per_epoch=10)
    for i in range(10):
        slow.step(model, quality=0.5 + 0.001 * i)  # stalled: grows at the full rate
    assert slow.lam == pytest.approx(2.5)

    # the guard: 400 held-out items; a model predicting class 0 for all but a share of them
    x = np.zeros((400, 1, 1, 1), np.uint8)
    y = np.zeros(400, np.int64)

    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wrong = 0.0
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            n = inp.shape[0]
            logits = torch.zeros(n, 2)
            k = round(self.wrong * n)
            logits[:k, 1] = 1.0
            logits[k:, 0] = 1.0
            return logits

    guard = StrengthController(lambda m: 0.5, target=0.9, start=8.0, holdout=Split(x, y))
    fixed = Fixed()
    fixed.wrong = 0.10
    guard(1, fixed)
    fixed.wrong = 0.12  # 2 points: within the noise of 400 items (2.5 SE = 3.75 points)
    guard(2, fixed)
    assert guard.lam == 8.0
    fixed.wrong = 0.20  # 10 points: a real drop, but one epoch of it could be noise
    entry = guard(3, fixed)
    assert guard.lam == 8.0 and "auto_backed_off_to" not in entry
    entry = guard(4, fixed)  # the second epoch in a row: it lasts
    assert guard.lam == 4.0 and entry["auto_backed_off_to"] == 4.0
    for _ in range(50):  # capped from now on, however low the quality
        guard.step(fixed)
    assert guard.lam <= 4.0


def test_trainer_does_not_train_on_the_excluded_items(digits) -> None:
    seen: list[int] = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(64, 10)

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            if self.training:
                seen.append(inp.shape[0])
            return self.lin(inp.reshape(inp.shape[0], -1))

    exclude = holdout_indices(len(digits.train), reserved=100, seed=1)
    Trainer(recipe("digits").__class__(epochs=1), exclude=exclude).fit(Spy(), digits.train)
    assert sum(seen) == len(digits.train) - len(exclude)

    # rejoining after epoch 2 of 4: the first two epochs without them, the last two with
    per_epoch: list[int] = []
    told: list[int] = []

    class Watch:
        def __call__(self, epoch: int, model: nn.Module) -> None:
            per_epoch.append(sum(seen))
            seen.clear()

        def rejoined(self, epoch: int) -> None:
            told.append(epoch)

    seen.clear()
    config = recipe("digits").__class__(epochs=4)
    Trainer(config, exclude=exclude, exclude_epochs=2, callbacks=[Watch()]).fit(Spy(), digits.train)
    n, k = len(digits.train), len(exclude)
    assert per_epoch == [n - k, n - k, n, n] and told == [2]


def test_the_held_out_slice_rejoins_at_half_the_epochs_and_caps_lam(digits) -> None:
    seed_everything(0)
    model = create_model_for(digits)
    plan = create_attack("sign").plan(model, digits, seed=0)
    assert plan.exclude_epochs(recipe("digits", epochs=15)) == 8  # ceil(7.5)
    assert plan.exclude_epochs(recipe("digits", epochs=1)) == 1
    fixed = create_attack("sign", lam=10).plan(model, digits, seed=0)
    assert fixed.exclude_epochs(recipe("digits")) is None  # nothing held out to rejoin
    # 500 digits are 50 a class: too few to spare a tenth, so no slice and no guard
    scarce = create_dataset("digits", train_limit=500)
    for name in ("sign", "correlation"):
        plan = create_attack(name).plan(create_model_for(scarce), scarce, seed=0)
        assert plan.exclude == () and plan.exclude_epochs(recipe("digits")) is None
        controller = plan.callbacks[0]
        assert isinstance(controller, StrengthController) and controller.holdout is None

    x = np.zeros((400, 1, 1, 1), np.uint8)
    c = StrengthController(lambda m: 0.2, target=0.9, start=1.0, every=1, steps_per_epoch=10,
                           holdout=Split(x, np.zeros(400, np.int64)))  # fmt: skip
    probe = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    for _ in range(10):  # one epoch below the target: x 2.5
        c.step(probe)
    assert "auto_holdout_accuracy" in c(1, probe)
    c.rejoined(1)
    assert c.schedule[-1]["holdout_rejoins"] is True
    for _ in range(100):  # ten more epochs below the target: capped at 2 x the peak, 2.5
        c.step(probe)
    assert c.lam == pytest.approx(5.0)
    assert "auto_holdout_accuracy" not in c(2, probe)  # the slice is trained on: no guard


def test_bad_strengths_are_one_line_errors() -> None:
    assert parse_lam("AUTO") is None
    with pytest.raises(ConfigError, match="number or 'auto'"):
        parse_lam("strong")
    with pytest.raises(ConfigError, match=">= 0"):
        create_attack("sign", lam=-1)


def test_metrics_json_records_the_schedule(cli, tmp_path) -> None:
    out = tmp_path / "run"
    code, _, err = cli("train", "-d", "digits", "-o", str(out), "--epochs", "3",
                       "--attack", "sign", "--json")  # fmt: skip
    assert code == 0, err
    attack = json.loads((out / "metrics.json").read_text())["attack"]
    assert attack["settings"]["lam"] == "auto"
    assert [e["epoch"] for e in attack["strength_schedule"]] == [1, 2, 3]
    assert attack["held_out_items"] > 100 and attack["held_out_epochs"] == 2
