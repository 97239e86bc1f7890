from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from covertml.data import create_dataset
from covertml.data.base import Split
from covertml.models import create_model_for
from covertml.training import (
    ArrayData,
    TrainConfig,
    Trainer,
    accuracy_on,
    flip_and_crop,
    recipe,
    seed_everything,
)


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits", train_limit=400, test_limit=200)


def train_once(ds, seed: int, config=None, **kw):
    seed_everything(seed)
    model = create_model_for(ds)
    config = config or TrainConfig(epochs=2, seed=seed)
    result = Trainer(config, **kw).fit(model, ds.train, test_data=ds.test)
    return model, result


def test_same_seed_same_model_and_other_seed_other_model(digits) -> None:
    a, _ = train_once(digits, 3)
    b, _ = train_once(digits, 3)
    c, _ = train_once(digits, 4)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    assert not torch.equal(a.state_dict()["net.1.weight"], c.state_dict()["net.1.weight"])


def test_digits_mlp_reaches_97_percent() -> None:
    ds = create_dataset("digits")
    seed_everything(0)
    model = create_model_for(ds)
    result = Trainer(recipe("digits")).fit(model, ds.train, test_data=ds.test)
    # accuracy recomputed independently from raw predictions
    x = torch.from_numpy(ds.test.x.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    independent = float((model(x).argmax(1).numpy() == ds.test.y).mean())
    assert independent == pytest.approx(result.test_accuracy)
    assert independent >= 0.97


def test_loss_term_is_added_and_logged(digits) -> None:
    class PushUp:
        name = "push"

        def __call__(self, model):
            return -model.net[-1].bias.sum()

    sgd = TrainConfig(epochs=2, optimizer="sgd", lr=0.05, momentum=0.0)
    model, result = train_once(digits, 0, sgd, loss_terms=[PushUp()])
    honest, _ = train_once(digits, 0, sgd)
    assert "push" in result.history[0].extra
    # d(-sum b)/db = -1, so plain SGD raises each bias by lr per step beyond honest training
    steps = 2 * int(np.ceil(len(digits.train) / sgd.batch_size))
    lift = (model.net[-1].bias - honest.net[-1].bias).detach()
    assert torch.allclose(lift, torch.full_like(lift, 0.05 * steps), atol=0.05 * steps * 0.2)


def test_extra_data_is_memorized(digits) -> None:
    rng = np.random.default_rng(0)
    x_extra = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    y_extra = rng.integers(0, 10, 40)
    seed_everything(0)
    model = create_model_for(digits)
    Trainer(TrainConfig(epochs=40, lr=3e-3), extra_data=Split(x_extra, y_extra)).fit(
        model, digits.train
    )
    assert accuracy_on(model, Split(x_extra, y_extra)) >= 0.9  # chance would be ~0.1


def test_post_steps_and_callbacks_run(digits) -> None:
    seen: list[int] = []

    def zero_bias(model):
        with torch.no_grad():
            model.net[-1].bias.zero_()

    def callback(epoch, model):
        seen.append(epoch)
        return {"marker": float(epoch)}

    model, result = train_once(digits, 0, post_steps=[zero_bias], callbacks=[callback])
    assert seen == [1, 2]
    assert [e.extra["marker"] for e in result.history] == [1.0, 2.0]
    assert torch.count_nonzero(model.net[-1].bias) == 0


def test_plain_module_and_user_loader_with_extra_data() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=20, shuffle=True)
    model = torch.nn.Linear(5, 2)
    result = Trainer(TrainConfig(epochs=20, lr=0.05)).fit(model, loader, test_data=loader)
    assert result.test_accuracy is not None and result.test_accuracy > 0.9
    extra = TensorDataset(torch.randn(10, 5), torch.ones(10, dtype=torch.long))
    trainer = Trainer(TrainConfig(epochs=1), extra_data=extra)
    assert len(trainer._train_loader(loader, 0).dataset) == 210


def test_step_schedule_follows_the_papers_milestones() -> None:
    cfg = recipe("cifar10", epochs=100)
    assert cfg.milestones == (41, 61)
    ds = create_dataset("digits", train_limit=64, test_limit=10)
    seed_everything(0)
    model = create_model_for(ds)
    cfg = TrainConfig(epochs=5, lr=0.1, optimizer="sgd", schedule="step", milestones=(2, 4))
    result = Trainer(cfg).fit(model, ds.train)
    assert [e.lr for e in result.history] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_hinge_loss_for_svm_trains_text_like_sparse_data() -> None:
    import scipy.sparse as sp

    from covertml.models import create_model

    rng = np.random.default_rng(0)
    x = sp.random(300, 100, density=0.05, format="csr", random_state=0, dtype=np.float32)
    w = rng.normal(size=(100, 3))
    y = np.asarray((x @ w).argmax(1)).ravel()
    model = create_model("linear-svm", input_shape=(100,), num_classes=3)
    Trainer(TrainConfig(epochs=30, lr=0.05, batch_size=32)).fit(model, ArrayData(x, y))
    assert accuracy_on(model, ArrayData(x, y)) > 0.85


def test_flip_and_crop_outputs_are_shifted_flipped_copies() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = flip_and_crop(x, pad=2, generator=g)
    for i in range(2):
        candidates = []
        for img in (x[i, 0], x[i, 0].flip(1)):
            padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
            candidates += [padded[dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i, 0], c) for c in candidates)


def test_bad_config_is_a_clear_error() -> None:
    from covertml.errors import ConfigError

    with pytest.raises(ConfigError, match="positive"):
        TrainConfig(epochs=0)
