"""The reference trainer and its extension points (loss terms, extra data, post steps)."""

from covertml.training.batches import ArrayData, flip_and_crop, make_loader, to_model_input
from covertml.training.config import EpochStats, TrainConfig, TrainResult
from covertml.training.evaluate import accuracy_on, predict_labels
from covertml.training.recipes import recipe
from covertml.training.trainer import (
    Callback,
    LossTerm,
    PostStep,
    Trainer,
    seed_everything,
)

__all__ = [
    "ArrayData",
    "Callback",
    "EpochStats",
    "LossTerm",
    "PostStep",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "accuracy_on",
    "flip_and_crop",
    "make_loader",
    "predict_labels",
    "recipe",
    "seed_everything",
    "to_model_input",
]
