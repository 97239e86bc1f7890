"""Device plumbing, checked on the CPU: names, errors, the on-device batch path, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from covertml.data import create_dataset
from covertml.devices import describe_device, resolve_device
from covertml.errors import ConfigError
from covertml.runner import parse_grid, run_grid
from covertml.runner.config import on_device
from covertml.training import ArrayData, TrainConfig, Trainer, seed_everything
from covertml.training.batches import DeviceBatches, make_loader
from covertml.training.evaluate import predict_labels


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_auto_is_the_cpu_without_a_gpu(no_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("covertml.devices._mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_prefers_cuda_when_present(two_gpus: None) -> None:
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("cuda", "torch sees no CUDA GPU"),
        ("cuda:0", "torch sees no CUDA GPU"),
        ("gpu", "unknown device 'gpu'"),
        ("cuda:x", "unknown device"),
        ("cpu:1", "unknown device"),
    ],
)
def test_absent_or_unknown_devices_are_errors(no_cuda: None, spec: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        resolve_device(spec)
    assert "\n" not in str(info.value) and " -- " in str(info.value)  # one line, with a fix


def test_a_gpu_index_past_the_last_is_an_error(two_gpus: None) -> None:
    with pytest.raises(ConfigError, match=r"has 2 CUDA device\(s\) -- use cuda:0 to cuda:1"):
        resolve_device("cuda:2")


def test_mps_absent_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("covertml.devices._mps_available", lambda: False)
    with pytest.raises(ConfigError, match="'mps' is not available"):
        resolve_device("mps")


def _images(n: int = 96, seed: int = 0) -> ArrayData:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    noise = rng.integers(0, 160, size=(n, 8, 8, 3))
    x = (noise + 96 * y.reshape(-1, 1, 1, 1)).astype(np.uint8)  # class 1 is brighter
    return ArrayData(x, y)


class _TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


def test_device_batches_are_the_loaders_batches() -> None:
    data = _images()
    loader = make_loader(data, batch_size=32, shuffle=True, seed=5)
    twin = DeviceBatches(data, make_loader(data, batch_size=32, shuffle=True, seed=5))
    for _ in range(2):  # the same orders epoch after epoch
        pairs = list(zip(loader, twin, strict=True))
        assert len(pairs) == 3
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            # independent of both: the loader's input is the uint8 image, NCHW, over 255
            assert xa.shape == (32, 3, 8, 8) and float(xa.max()) <= 1.0


def test_channels_last_batches_hold_the_same_values() -> None:
    data = _images()
    plain = DeviceBatches(data, make_loader(data, batch_size=16, shuffle=True, seed=1))
    last = DeviceBatches(
        data, make_loader(data, batch_size=16, shuffle=True, seed=1), channels_last=True
    )
    for (xa, _), (xb, _) in zip(plain, last, strict=True):
        assert xb.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(xa, xb)


def _fit(data: ArrayData, **config):
    seed_everything(0)
    model = _TinyCNN()
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 16, "lr": 0.05, "seed": 0, **config})
    return model, Trainer(cfg).fit(model, data, test_data=data)


@pytest.mark.parametrize("augment", ["none", "flip-crop"])
def test_the_on_device_path_trains_the_same_model(
    monkeypatch: pytest.MonkeyPatch, augment: str
) -> None:
    data = _images()
    reference, _ = _fit(data, device="cpu", augment=augment)  # the host loader's batches
    # the GPU path (data kept on the device, sums read once an epoch), here on the CPU
    monkeypatch.setattr("covertml.training.trainer.is_accelerator", lambda d: True)
    calls = []
    original = DeviceBatches.__init__

    def counted(self, *args, **kwargs):
        calls.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(DeviceBatches, "__init__", counted)
    model, result = _fit(data, device="cpu", augment=augment)
    assert calls  # the on-device path was taken
    pairs = zip(reference.state_dict().items(), model.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        assert torch.equal(a, b), name
    assert result.device == "cpu"
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_bf16_autocast_trains_a_float32_model() -> None:
    data = _images(192)
    _, full = _fit(data, device="cpu", epochs=6, optimizer="sgd")
    model, half = _fit(data, device="cpu", epochs=6, optimizer="sgd", amp=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert full.test_accuracy > 0.8  # the rule is learnable at these settings
    assert half.test_accuracy > full.test_accuracy - 0.1  # and bf16 steps learn it too


def test_predict_labels_on_a_named_device_leaves_the_model_where_it_was() -> None:
    data = _images()
    model, _ = _fit(data, device="cpu")
    x = torch.from_numpy(data.x).permute(0, 3, 1, 2).float() / 255
    independent = model(x).argmax(1).numpy()
    assert np.array_equal(predict_labels(model, data.x, device="cpu"), independent)
    assert next(model.parameters()).device.type == "cpu"


def test_describe_device_names_the_cpu() -> None:
    assert describe_device(torch.device("cpu")) == "cpu"


# -- grids ------------------------------------------------------------------------------
def test_grid_device_keys_reach_every_dataset_and_can_be_overridden() -> None:
    grid = parse_grid('device = "cpu"\namp = true\n[datasets.digits]\n[datasets.cifar10]\n'
                      'device = "cuda:1"')  # fmt: skip
    assert grid.datasets["digits"] == {"device": "cpu", "amp": True}
    assert grid.datasets["cifar10"] == {"device": "cuda:1", "amp": True}
    moved = on_device(grid, "cuda", amp=False)
    assert {t["device"] for t in moved.datasets.values()} == {"cuda"}
    assert not any(t["amp"] for t in moved.datasets.values())
    assert on_device(grid) is grid
    assert [c.id for c in moved.cells()] == [c.id for c in grid.cells()]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("device = 1\n[datasets.digits]", "device must be a string"),
        ('amp = "yes"\n[datasets.digits]', "amp must be true or false"),
        ("[datasets.digits]\ndevice = 0", r"\[datasets.digits\] device must be a string"),
    ],
)
def test_bad_device_keys_are_errors(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_grid(text)


def test_a_run_begun_on_one_device_resumes_on_another(tmp_path) -> None:
    text = "[datasets.digits]\nepochs = 1\ntrain_limit = 120\ntest_limit = 40"
    first = run_grid(on_device(parse_grid(text), "cpu"), tmp_path)
    again = run_grid(on_device(parse_grid(text), "auto"), tmp_path)
    assert first.done == again.done == 1 and again.resumed
    record = json.loads((tmp_path / "results.json").read_text())[0]
    assert record["device"] == "cpu"
    # amp changes what is trained: that is another setting, not another place
    with pytest.raises(ConfigError, match="other settings"):
        run_grid(on_device(parse_grid(text), "cpu", amp=True), tmp_path)


# -- the command line -------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "-d", "digits", "-o", "{out}", "--device", "cuda"],
        ["demo", "-o", "{out}", "--device", "cuda:0"],
        ["reproduce", "-c", "{grid}", "-o", "{out}", "--device", "cuda"],
        ["scan", "{model}", "--device", "cuda"],
        ["sanitize", "{model}", "{out}/m.safetensors", "-m", "finetune", "--device", "cuda"],
        ["guard", "-d", "digits", "-o", "{out}", "--device", "cuda", "--", "python", "-c", "1"],
    ],
)
def test_a_cuda_option_without_cuda_fails_cleanly(no_cuda: None, cli, tmp_path, argv) -> None:
    from covertml.models import create_model, save_model

    model = save_model(
        create_model("mlp", input_shape=(1, 8, 8), num_classes=10), tmp_path / "in.safetensors"
    )
    grid = tmp_path / "g.toml"
    grid.write_text("[datasets.digits]\nepochs = 1\n")
    out = tmp_path / "out"
    args = [a.format(out=out, grid=grid, model=model) for a in argv]
    code, _, err = cli(*args)
    assert code == 2, err
    assert "torch sees no CUDA GPU" in err and "--device auto or --device cpu" in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert not out.exists() or not any(out.rglob("*.safetensors"))  # nothing was trained


def test_train_records_the_device_it_ran_on(cli, tmp_path) -> None:
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "-d", "digits", "-o", str(out), "--epochs", "1", "--device", "cpu", "--json"
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"] == "cpu" and metrics["config"]["device"] == "cpu"


def test_digits_trains_the_same_on_cpu_and_auto_without_a_gpu(no_cuda: None) -> None:
    ds = create_dataset("digits", train_limit=200, test_limit=50)
    from covertml.models import create_model_for

    states = []
    for device in ("cpu", "auto"):
        seed_everything(0)
        model = create_model_for(ds)
        Trainer(TrainConfig(epochs=1, seed=0, device=device)).fit(model, ds.train)
        states.append(model.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
