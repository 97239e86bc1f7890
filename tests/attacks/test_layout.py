"""Where correlated value encoding puts the secret: rows of an image-shaped first layer."""

from __future__ import annotations

import numpy as np
import pytest

from covertml.attacks import AttackKey, create_attack, decode_secret
from covertml.errors import ConfigError
from covertml.models import create_model_for
from covertml.training import TrainConfig, seed_everything


def fresh(ds, name=None):
    seed_everything(0)
    return create_model_for(ds, name)


def test_rows_layout_puts_one_image_in_each_first_layer_row(digits) -> None:
    model = fresh(digits, "mlp")
    plan = create_attack("correlation").plan(model, digits)  # lam auto: rows, a quarter
    first = dict(model.named_parameters())[plan.key.carriers.names[0]]
    rows, cols = first.shape
    assert cols == 64 and plan.key.settings["layout"]["name"] == "rows"
    assert plan.secret.count == rows // 4  # a quarter of the rows; the rest for the task
    full = create_attack("correlation", lam=5.0, layout="rows", share=1.0).plan(
        fresh(digits, "mlp"), digits
    )
    assert full.secret.count == rows  # one item per row, nothing beyond the first layer

    # the term's gradient touches the first layer and the pilot only
    (term,) = plan.loss_terms
    model.zero_grad()
    term(model).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    names = plan.key.carriers.names
    used = plan.secret.count
    assert grads[names[0]][:used].abs().min() > 0 and grads[names[0]][used:].abs().max() == 0
    second = grads[names[1]].reshape(-1)
    assert second[:256].abs().min() > 0 and second[256:].abs().max() == 0
    assert all(n not in grads or grads[n].abs().max() == 0 for n in names[2:])

    plan = create_attack("correlation", lam=5.0, layout="rows", share=0.5).plan(model, digits)
    plan.trainer(TrainConfig(epochs=8, lr=2e-3, batch_size=32)).fit(model, digits.train)
    w = first.detach().numpy().astype(np.float64)
    images = plan.secret.images().reshape(plan.secret.count, -1).astype(np.float64)
    r = np.array([np.corrcoef(w[i], images[i])[0, 1] for i in range(len(images))])
    assert np.median(np.abs(r)) > 0.7  # row i is image i, up to an affine map
    recovered = decode_secret(model, plan.key).images().astype(float)
    assert np.mean(np.abs(recovered - plan.secret.images())) < 40


def test_flat_layout_is_the_paper_order_and_old_keys_decode_as_flat(digits) -> None:
    model = fresh(digits, "mlp")
    plan = create_attack("correlation", lam=5.0, layout="flat").plan(model, digits)
    assert plan.secret.count > 256  # spills past the first layer
    plan.trainer(TrainConfig(epochs=2, lr=2e-3, batch_size=32)).fit(model, digits.train)
    data = plan.key.to_dict()
    del data["settings"]["layout"]  # a key written before layouts existed
    old = AttackKey.from_dict(data)
    assert np.array_equal(decode_secret(model, old).values, decode_secret(model, plan.key).values)


def test_rows_layout_is_refused_where_rows_are_not_image_shaped(digits) -> None:
    model = fresh(digits, "resnet20")
    with pytest.raises(ConfigError, match="layout 'rows' needs"):
        create_attack("correlation", lam=1.0, layout="rows").plan(model, digits)
    fixed = create_attack("correlation", lam=1.0).plan(model, digits)  # the paper's order
    assert fixed.key.settings["layout"]["name"] == "flat"
    plan = create_attack("correlation").plan(model, digits)  # lam auto: tail here
    lay = plan.key.settings["layout"]
    assert lay["name"] == "tail"
    sizes = [int(np.prod(s)) for s in plan.key.carriers.shapes]
    starts = np.cumsum([0, *sizes])
    n = plan.secret.values.size
    i = int(np.searchsorted(starts, lay["secret"][0]))
    assert starts[i] == lay["secret"][0] and starts[-1] - starts[i] >= n  # starts a tensor
    assert starts[-1] - starts[i + 1] < n  # and no later tensor start would hold it
    assert lay["pilot"] == [int(starts[i - 1]), 256]
    with pytest.raises(ConfigError, match="unknown layout"):
        create_attack("correlation", layout="diagonal")


def test_a_malformed_layout_in_the_key_is_a_clear_error(digits) -> None:
    plan = create_attack("correlation").plan(fresh(digits, "mlp"), digits)
    data = plan.key.to_dict()
    data["settings"]["layout"] = {"name": "rows", "pilot": [1]}
    with pytest.raises(ConfigError, match=r"layout .* is malformed"):
        decode_secret(fresh(digits, "mlp"), AttackKey.from_dict(data))
