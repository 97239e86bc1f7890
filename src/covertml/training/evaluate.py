"""Prediction and accuracy for any model and any of covertml's data forms."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from covertml.data.base import Split
from covertml.devices import model_on
from covertml.training.batches import ArrayData, make_loader, to_model_input


def as_loader(data: Any, *, batch_size: int = 512) -> DataLoader[Any]:
    """Wraps a split, :class:`ArrayData` or torch dataset in an unshuffled loader."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Split):
        data = ArrayData.from_split(data)
    if not isinstance(data, TorchDataset):
        raise TypeError(f"cannot evaluate on {type(data).__name__}")
    return make_loader(data, batch_size=batch_size, shuffle=False)


@torch.no_grad()
def predict_labels(
    model: nn.Module,
    x: np.ndarray | sp.spmatrix | torch.Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Predicted class indices for the rows of ``x`` (dataset rows or model-ready tensors).

    ``device`` (e.g. ``"cuda"``): predict with a copy of ``model`` on that device; by
    default the model is used where its parameters are.

    Example:
        >>> from covertml.models import create_model
        >>> m = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
        >>> predict_labels(m, np.zeros((3, 8, 8, 1), np.uint8)).shape
        (3,)
    """
    model = model_on(model, device)  # a copy when it must move: the caller's model stays
    first = next(model.parameters(), None)
    here = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    out = []
    n = x.shape[0]
    for i in range(0, n, batch_size):
        chunk = x[i : i + batch_size]
        xb = chunk if isinstance(chunk, torch.Tensor) else to_model_input(chunk)
        out.append(model(xb.to(here)).argmax(1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def accuracy_on(model: nn.Module, data: Any) -> float:
    """Top-1 accuracy of ``model`` on a split, dataset or loader."""
    loader = as_loader(data)
    was_training = model.training
    model.eval()
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    correct = seen = 0
    for xb, yb in loader:
        pred = model(xb.to(device)).argmax(1).cpu()
        correct += int((pred == yb).sum())
        seen += int(yb.shape[0])
    model.train(was_training)
    return correct / seen if seen else float("nan")
