"""Every registered model trains (loss falls) and its file reproduces its predictions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from covertml.data.base import Split
from covertml.models import MODELS, create_model, list_models, load_model, save_model
from covertml.training import ArrayData, TrainConfig, Trainer, predict_labels

IMAGE_SHAPE = {"face-cnn": (3, 24, 20)}


def tiny_data(name: str) -> tuple[Split, tuple[int, ...]]:
    rng = np.random.default_rng(0)
    if MODELS.get(name).meta["modality"] == "text":
        x = sp.random(64, 30, density=0.2, format="csr", random_state=0, dtype=np.float32)
        y = np.asarray(x[:, :3].argmax(1)).ravel()
        return Split(x, y), (30,)
    c, h, w = IMAGE_SHAPE.get(name, (3, 16, 16))
    y = rng.integers(0, 3, 64)
    x = rng.integers(0, 60, (64, h, w, c)).astype(np.uint8)
    x[np.arange(64), :, :, y % c] += 150  # the class is the bright channel
    return Split(x, y), (c, h, w)


@pytest.mark.parametrize("name", list_models())
def test_model_trains_and_round_trips(name: str, tmp_path) -> None:
    split, shape = tiny_data(name)
    torch.manual_seed(0)
    args = {"depth": 8} if name == "resnet" else {}
    model = create_model(name, input_shape=shape, num_classes=3, **args)
    result = Trainer(TrainConfig(epochs=6, lr=3e-3, batch_size=16)).fit(model, split)
    assert result.history[-1].train_loss < result.history[0].train_loss
    path = save_model(model, tmp_path / f"{name}.safetensors")
    loaded = load_model(path).model
    data = ArrayData.from_split(split)
    xb, _ = data.__getitems__(range(len(data)))
    with torch.no_grad():
        assert torch.equal(model.eval()(xb), loaded(xb))
    assert np.array_equal(predict_labels(model, split.x), predict_labels(loaded, split.x))
