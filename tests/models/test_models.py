from __future__ import annotations

import numpy as np
import pytest
import torch

from covertml.data import create_dataset
from covertml.errors import ConfigError
from covertml.models import create_model, create_model_for, list_models, model_spec


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k


def resnet_params(depth: int, classes: int = 10) -> int:
    """Independent count: 6n+2 ResNet, widths 16/32/64, projection shortcuts, BN (2/channel)."""
    n = (depth - 2) // 6
    total = conv(3, 16, 3) + 2 * 16
    cin = 16
    for stage, w in enumerate((16, 32, 64)):
        for i in range(n):
            total += conv(cin, w, 3) + 2 * w + conv(w, w, 3) + 2 * w
            if stage > 0 and i == 0:
                total += conv(cin, w, 1) + 2 * w
            cin = w
    return total + 64 * classes + classes


@pytest.mark.parametrize("depth", [20, 32])
def test_resnet_has_the_textbook_parameter_count(depth: int) -> None:
    model = create_model(f"resnet{depth}", input_shape=(3, 32, 32), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == resnet_params(depth)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet32_is_the_papers_size_and_depth_is_configurable() -> None:
    assert 0.46e6 < resnet_params(32) < 0.48e6
    model = create_model("resnet", input_shape=(3, 32, 32), num_classes=10, depth=8)
    assert sum(p.numel() for p in model.parameters()) == resnet_params(8)
    with pytest.raises(ValueError, match="6n\\+2"):
        create_model("resnet", input_shape=(3, 32, 32), num_classes=10, depth=21)


def test_face_cnn_is_about_the_papers_size_at_62x47() -> None:
    model = create_model("face-cnn", input_shape=(3, 62, 47), num_classes=2)
    assert 0.8e6 < sum(p.numel() for p in model.parameters()) < 1.0e6
    assert model.eval()(torch.zeros(2, 3, 62, 47)).shape == (2, 2)


def test_linear_text_models_accept_sparse_and_dense_input() -> None:
    for name in ("logreg", "linear-svm"):
        model = create_model(name, input_shape=(50,), num_classes=3)
        dense = torch.zeros(4, 50)
        dense[0, 3], dense[1, 7], dense[3, 49] = 1.0, 0.5, 2.0
        expected = dense @ model.weight.detach().T + model.bias.detach()
        assert torch.allclose(model(dense.to_sparse()), expected, atol=1e-6)
        assert torch.allclose(model(dense.to_sparse_csr()), expected, atol=1e-6)
        assert sum(p.numel() for p in model.parameters()) == 50 * 3 + 3


def test_every_registered_model_builds_and_records_its_spec() -> None:
    shapes = {"text": (20,), "image": (3, 32, 32)}
    from covertml.models import MODELS

    for name in list_models():
        modality = MODELS.get(name).meta["modality"]
        model = create_model(name, input_shape=shapes[modality], num_classes=4)
        spec = model_spec(model)
        assert spec.name == name and spec.num_classes == 4
        assert list(spec.input_shape) == list(shapes[modality])


def test_create_model_for_uses_training_set_statistics() -> None:
    ds = create_dataset("digits")
    model = create_model_for(ds)
    x = ds.train.x.astype(np.float64) / 255
    spec = model_spec(model)
    assert spec.args["mean"][0] == pytest.approx(x.mean(), abs=1e-5)
    assert spec.args["std"][0] == pytest.approx(x.std(), abs=1e-5)
    with pytest.raises(ConfigError, match="takes text input"):
        create_model_for(ds, "logreg")
