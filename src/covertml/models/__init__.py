"""Models: a registry of architectures and safetensors model files.

Example:
    >>> from covertml.models import create_model, list_models
    >>> "resnet32" in list_models()
    True
"""

from covertml.models import cnn, linear, mlp, resnet  # noqa: F401  (registers models)
from covertml.models.files import LoadedModel, ModelInfo, load_model, save_model
from covertml.models.registry import (
    MODELS,
    ModelSpec,
    create_model,
    create_model_for,
    list_models,
    loss_name,
    model_spec,
    register_model,
    set_model_spec,
)

__all__ = [
    "MODELS",
    "LoadedModel",
    "ModelInfo",
    "ModelSpec",
    "create_model",
    "create_model_for",
    "list_models",
    "load_model",
    "loss_name",
    "model_spec",
    "register_model",
    "save_model",
    "set_model_spec",
]
