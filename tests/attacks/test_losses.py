"""The malicious loss terms equal their formulas, computed independently with NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from covertml.attacks import CarrierMap, CorrelationLoss, SignLoss


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5))


def carriers(model: nn.Module, n: int) -> np.ndarray:
    weights = [model[0].weight, model[2].weight]
    return np.concatenate([w.detach().numpy().ravel() for w in weights])[:n].astype(np.float64)


@pytest.mark.parametrize("signed", [False, True])
def test_correlation_term_is_minus_lambda_abs_pearson(model, signed) -> None:
    target = np.random.default_rng(0).integers(0, 256, 650).astype(float)
    term = CorrelationLoss(CarrierMap.from_model(model), target, lam=2.0, signed=signed)
    r = np.corrcoef(carriers(model, 650), target)[0, 1]
    expected = -2.0 * (r if signed else abs(r))
    assert float(term(model).detach()) == pytest.approx(expected, rel=1e-5)


def test_sign_term_is_lambda_mean_hinge(model) -> None:
    bits = np.random.default_rng(1).integers(0, 2, 650)
    term = SignLoss(CarrierMap.from_model(model), bits, lam=3.0, margin=0.05)
    theta = carriers(model, 650)
    expected = 3.0 * np.mean(np.maximum(0, 0.05 - theta * (2 * bits - 1)))
    assert float(term(model).detach()) == pytest.approx(expected, rel=1e-5)


def test_gradients_flow_to_every_carrier_piece(model) -> None:
    target = np.arange(650.0)
    CorrelationLoss(CarrierMap.from_model(model), target, lam=1.0)(model).backward()
    assert model[0].weight.grad is not None and model[2].weight.grad is not None
    assert model[2].weight.grad.abs().sum() > 0  # the secret spills into the second tensor
    assert model[0].bias.grad is None  # biases are not carriers


def test_hand_written_gradients_pass_gradcheck() -> None:
    from covertml.attacks.correlation import _Pearson
    from covertml.attacks.sign import _SignHinge

    torch.manual_seed(0)
    t = torch.randn(70, dtype=torch.float64)
    t = (t - t.mean()) / (t - t.mean()).norm()
    a = torch.randn(30, dtype=torch.float64, requires_grad=True)
    b = torch.randn(40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: _Pearson.apply(t, x, y), (a, b))
    signs = torch.randint(0, 2, (30,)).double() * 2 - 1
    theta = (torch.rand(30, dtype=torch.float64) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: _SignHinge.apply(x, signs, 0.1), (theta,))
