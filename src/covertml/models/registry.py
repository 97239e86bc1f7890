"""The model registry: :func:`create_model`, :func:`list_models`, :func:`register_model`.

Every model is built from ``(name, args)`` alone, where ``args`` is a JSON-able dict that
always contains ``input_shape`` and ``num_classes``. That pair is the model's
:class:`ModelSpec`; it is stored in the safetensors metadata so a model file can be rebuilt
without any other information.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from covertml.data.base import Dataset
from covertml.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
_SPEC_ATTR = "_covertml_spec"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: registry name and JSON-able arguments."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"name": self.name, "args": self.args}

    def to_json(self) -> str:
        """Compact JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(int(s) for s in self.args["input_shape"])

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return int(self.args["num_classes"])


def register_model(
    name: str,
    *,
    help: str,
    modality: str,
    loss: str = "cross_entropy",
    aliases: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Registers a model factory ``factory(*, input_shape, num_classes, **args)``.

    Args:
        name: Registry name.
        help: One-line description.
        modality: ``"image"`` or ``"text"`` input.
        loss: Training loss the reference trainer uses: ``"cross_entropy"`` or ``"hinge"``.
        aliases: Other names; an alias may fix arguments through ``defaults``.
        defaults: Arguments the name implies (used by aliases such as ``resnet32``).
    """
    return MODELS.register(
        name, help=help, aliases=aliases, modality=modality, loss=loss, defaults=defaults or {}
    )


def list_models() -> list[str]:
    """Registered model names.

    Example:
        >>> names = set(list_models())
        >>> {"mlp", "resnet20", "resnet32", "face-cnn", "logreg", "linear-svm"} <= names
        True
    """
    return MODELS.names()


def create_model(
    name: str, *, input_shape: tuple[int, ...] | list[int], num_classes: int, **args: Any
) -> nn.Module:
    """Builds model ``name`` for inputs of ``input_shape`` and ``num_classes`` outputs.

    Example:
        >>> import torch
        >>> model = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
        >>> model_spec(model).name
        'mlp'
    """
    entry = MODELS.get(name)
    full = {**entry.meta["defaults"], **args}
    full["input_shape"] = [int(s) for s in input_shape]
    full["num_classes"] = int(num_classes)
    model = entry.factory(**full)
    setattr(model, _SPEC_ATTR, ModelSpec(entry.name, json.loads(json.dumps(full))))
    return model


def create_model_for(dataset: Dataset, name: str | None = None, **args: Any) -> nn.Module:
    """Builds a model sized for ``dataset``, with its input normalization statistics.

    For image datasets the per-channel mean and standard deviation of the training images
    (in [0, 1]) become the model's first layer, so the saved model takes raw [0, 1] pixels.

    Example:
        >>> from covertml.data import create_dataset
        >>> model = create_model_for(create_dataset("digits"))
        >>> model_spec(model).name, model_spec(model).num_classes
        ('mlp', 10)
    """
    from covertml.data.registry import DATASETS

    if name is None:
        name = str(DATASETS.get(dataset.name.partition(":")[0]).meta["default_model"])
    entry = MODELS.get(name)
    if entry.meta["modality"] != dataset.modality:
        from covertml.errors import ConfigError

        fitting = [m for m in list_models() if MODELS.get(m).meta["modality"] == dataset.modality]
        raise ConfigError(
            f"model {name!r} takes {entry.meta['modality']} input but dataset "
            f"{dataset.name!r} is {dataset.modality} data",
            fix="choose one of: " + ", ".join(fitting),
        )
    if dataset.modality == "image" and "mean" not in args:
        x = np.asarray(dataset.train.x, dtype=np.float64) / 255.0
        args["mean"] = [round(float(v), 6) for v in x.mean(axis=(0, 1, 2))]
        args["std"] = [round(max(float(v), 1e-3), 6) for v in x.std(axis=(0, 1, 2))]
    return create_model(
        name, input_shape=dataset.input_shape, num_classes=dataset.num_classes, **args
    )


def model_spec(model: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` a registry model was built from.

    Raises:
        ValueError: if ``model`` was not built by :func:`create_model`.
    """
    spec = getattr(model, _SPEC_ATTR, None)
    if not isinstance(spec, ModelSpec):
        raise ValueError(
            f"{type(model).__name__} was not built by covertml.models.create_model; "
            "pass spec=ModelSpec(...) to save_model to describe its architecture"
        )
    return spec


def set_model_spec(model: nn.Module, spec: ModelSpec) -> None:
    """Attaches ``spec`` to ``model`` (for models built outside the registry)."""
    setattr(model, _SPEC_ATTR, spec)


def loss_name(model: nn.Module) -> str:
    """The training loss a registry model expects (``cross_entropy`` or ``hinge``)."""
    spec = getattr(model, _SPEC_ATTR, None)
    if isinstance(spec, ModelSpec):
        return str(MODELS.get(spec.name).meta["loss"])
    return "cross_entropy"


def model_modality(name: str) -> str:
    """``"image"`` or ``"text"``: what registry model ``name`` takes as input.

    Example:
        >>> model_modality("logreg")
        'text'
    """
    return str(MODELS.get(name).meta["modality"])
