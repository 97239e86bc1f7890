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
    from covertml.attacks.sign_loss import _SignHinge

    torch.manual_seed(0)
    t = torch.randn(70, dtype=torch.float64)
    t = (t - t.mean()) / (t - t.mean()).norm()
    a = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(50, dtype=torch.float64, requires_grad=True)  # only 40 values used
    assert torch.autograd.gradcheck(lambda x, y: _Pearson.apply(t, (30, 40), x, y), (a, b))
    signs = torch.randint(0, 2, (70,)).double() * 2 - 1
    c = (torch.rand(5, 6, dtype=torch.float64) * 2 - 1).requires_grad_()
    d = (torch.rand(50, dtype=torch.float64) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, y: _SignHinge.apply(signs, 0.1, 0.5, (30, 40), x, y), (c, d)
    )


def test_sign_gradient_matches_the_formula_and_survives_retain_graph() -> None:
    """-lam/n * s on active hinges, 0 elsewhere; a second backward gives the same again."""
    model = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.5, 0.05, -2.0], [1.0, 1.0, 1.0, 1.0]]))
    bits = np.array([1, 1, 1, 0, 0])  # signs + + + - -
    term = SignLoss(CarrierMap.from_model(model), bits, lam=2.0, margin=0.1)
    loss = term(model)
    # slacks: 0.1-0.5<0, 0.1+0.5, 0.1-0.05, 0.1-2<0, 0.1+1 -> 0 + .6 + .05 + 0 + 1.1 = 1.75
    assert float(loss.detach()) == pytest.approx(2.0 * 1.75 / 5)
    loss.backward(retain_graph=True)
    expected = torch.tensor([[0.0, -1.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]) * 2.0 / 5
    assert torch.allclose(model.weight.grad, expected)
    loss.backward()
    assert torch.allclose(model.weight.grad, 2 * expected)
