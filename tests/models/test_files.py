from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open

from covertml.errors import ModelFileError
from covertml.models import ModelSpec, create_model, load_model, save_model, set_model_spec
from covertml.training import predict_labels

CASES = [
    ("mlp", (1, 8, 8), 10, {"mean": [0.3], "std": [0.2]}),
    ("resnet20", (3, 16, 16), 10, {}),
    ("face-cnn", (3, 24, 20), 2, {"hidden": 16}),
    ("logreg", (40,), 5, {}),
    ("linear-svm", (40,), 2, {}),
]


@pytest.mark.parametrize(("name", "shape", "classes", "args"), CASES)
def test_round_trip_gives_identical_predictions(tmp_path, name, shape, classes, args) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, num_classes=classes, **args).eval()
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
        for m in model.modules():  # make running statistics non-trivial
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    x = torch.rand(16, *shape)
    path = save_model(model, tmp_path / "m.safetensors", classes=[str(i) for i in range(classes)])
    loaded = load_model(path)
    assert torch.equal(model(x), loaded.model(x))
    assert np.array_equal(predict_labels(model, x), predict_labels(loaded.model, x))
    assert loaded.info.classes == tuple(str(i) for i in range(classes))
    spec = loaded.info.spec.to_dict()
    assert spec["name"] == name
    assert spec["args"]["input_shape"] == list(shape) and spec["args"]["num_classes"] == classes
    assert {k: spec["args"][k] for k in args} == args


def test_metadata_describes_the_architecture_in_plain_strings(tmp_path) -> None:
    model = create_model("resnet32", input_shape=(3, 32, 32), num_classes=10)
    path = save_model(model, tmp_path / "r.safetensors", metadata={"note": "x"})
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    arch = json.loads(meta["architecture"])
    assert arch["name"] == "resnet32" and arch["args"]["depth"] == 32
    assert meta["format"] == "covertml-model/1" and meta["note"] == "x"
    assert keys == set(model.state_dict())


def test_models_built_outside_the_registry_need_a_spec(tmp_path) -> None:
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="ModelSpec"):
        save_model(plain, tmp_path / "p.safetensors")
    set_model_spec(plain, ModelSpec("x", {}))
    assert save_model(plain, tmp_path / "p.safetensors").exists()


@pytest.fixture
def good_file(tmp_path):
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    return save_model(model, tmp_path / "good.safetensors")


def test_truncated_files_give_one_clear_line(good_file, tmp_path) -> None:
    data = good_file.read_bytes()
    for cut in (0, 5, 40, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError) as info:
            load_model(bad)
        assert "truncated" in str(info.value) or "not a safetensors" in str(info.value)
        assert "\n" not in str(info.value)


def test_garbage_and_missing_files(tmp_path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 10) + b"not json!!" + b"\0" * 10)
    with pytest.raises(ModelFileError, match=r"not a safetensors|corrupt"):
        load_model(junk)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")


def test_pickle_files_are_refused_unless_asked_and_then_weights_only(good_file, tmp_path) -> None:
    loaded = load_model(good_file)
    pt = tmp_path / "model.pt"
    meta = {"architecture": loaded.info.spec.to_json()}
    torch.save({"state_dict": loaded.model.state_dict(), "metadata": meta}, pt)
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(pt)
    again = load_model(pt, allow_pickle=True)
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(again.model(x), loaded.model(x))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, evil)
    with pytest.raises(ModelFileError, match="could not be read safely"):
        load_model(evil, allow_pickle=True)


def test_tensors_that_do_not_match_the_architecture_are_reported(tmp_path) -> None:
    from safetensors.torch import save_file

    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    spec = json.dumps({"name": "mlp", "args": {"input_shape": [1, 8, 8], "num_classes": 10}})
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["net.1.weight"] = torch.zeros(3, 3)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata={"architecture": spec})
    with pytest.raises(ModelFileError, match=r"net\.1\.weight has shape"):
        load_model(path)
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ModelFileError, match="no architecture metadata"):
        load_model(path)


def test_save_is_atomic_and_leaves_no_temp_files(good_file) -> None:
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    before = good_file.read_bytes()
    with pytest.raises(TypeError):
        save_model(model, good_file, metadata={"bad": 3})  # type: ignore[dict-item]
    assert good_file.read_bytes() == before
    assert [p.name for p in good_file.parent.iterdir()] == ["good.safetensors"]
