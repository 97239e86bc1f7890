"""Linear text classifiers on sparse TF-IDF input: logistic regression and linear SVM.

Both are one ``weight`` matrix (classes x features) and a bias, as in the paper's text
models; they differ in the training loss (cross-entropy vs multi-class hinge). Input may be
a dense tensor or a sparse COO/CSR tensor of shape ``N x features``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from covertml.models.registry import register_model


class SparseLinear(nn.Module):
    """``x @ weight.T + bias`` for dense or sparse ``x``.

    Example:
        >>> m = SparseLinear(input_shape=(5,), num_classes=2)
        >>> x = torch.eye(5)[:2].to_sparse()
        >>> torch.allclose(m(x), m(x.to_dense()))
        True
    """

    def __init__(self, *, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        features = int(input_shape[0])
        self.weight = nn.Parameter(torch.empty(num_classes, features))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns class scores, shape ``N x classes``."""
        if x.layout == torch.sparse_csr:
            x = x.to_sparse_coo()  # type: ignore[no-untyped-call]
        if x.is_sparse:
            out: torch.Tensor = torch.sparse.mm(x, self.weight.t()) + self.bias
            return out
        return nn.functional.linear(x, self.weight, self.bias)


def _linear(**args: Any) -> nn.Module:
    return SparseLinear(**args)


register_model(
    "logreg",
    help="multinomial logistic regression on TF-IDF features (cross-entropy)",
    modality="text",
)(_linear)
register_model(
    "linear-svm",
    help="linear SVM on TF-IDF features (multi-class hinge loss)",
    modality="text",
    loss="hinge",
)(_linear)
