"""Label oracles: what a black-box adversary can ask a deployed model.

An oracle maps a batch of model inputs to predicted labels and nothing else. The decoder
of capacity abuse works with any of them: a local model file (:class:`LocalOracle`), the
prediction API (:class:`covertml.serve.client.HTTPOracle`), or any function wrapped in
:class:`FunctionOracle`. Every oracle counts the queries (inputs) it answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import numpy as np
import scipy.sparse as sp
from torch import nn

from covertml.devices import model_on
from covertml.training.evaluate import predict_labels

Inputs: TypeAlias = "np.ndarray | sp.csr_matrix"


class LabelOracle(Protocol):
    """Answers label queries; ``queries`` counts inputs answered so far."""

    queries: int

    def __call__(self, inputs: Inputs) -> np.ndarray:
        """Predicted class index of every row of ``inputs`` (model-ready layout)."""
        ...


class FunctionOracle:
    """Wraps any ``predict_labels(inputs) -> labels`` function, batching and counting.

    Example:
        >>> oracle = FunctionOracle(lambda x: np.zeros(x.shape[0], np.int64), batch_size=2)
        >>> oracle(np.ones((5, 3), np.float32)).tolist(), oracle.queries
        ([0, 0, 0, 0, 0], 5)
    """

    def __init__(self, fn: Callable[[Inputs], Any], *, batch_size: int = 4096) -> None:
        self.fn = fn
        self.batch_size = batch_size
        self.queries = 0
        self.requests = 0

    def __call__(self, inputs: Inputs) -> np.ndarray:
        """Labels for ``inputs``, asked in batches of ``batch_size``."""
        out = []
        for i in range(0, inputs.shape[0], self.batch_size):
            chunk = inputs[i : i + self.batch_size]
            labels = np.asarray(self.fn(chunk), dtype=np.int64).reshape(-1)
            if labels.shape[0] != chunk.shape[0]:
                raise ValueError(f"asked {chunk.shape[0]} labels, got {labels.shape[0]}")
            out.append(labels)
            self.queries += chunk.shape[0]
            self.requests += 1
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class LocalOracle(FunctionOracle):
    """Queries a model in this process (model-ready float inputs or CSR rows)."""

    def __init__(
        self, model: nn.Module, *, batch_size: int = 4096, device: str | None = None
    ) -> None:
        model = model_on(model, device)  # moved once, not per query
        super().__init__(
            lambda x: predict_labels(model, x, batch_size=batch_size), batch_size=batch_size
        )
