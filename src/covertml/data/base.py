"""The in-memory dataset types every loader returns.

Images are kept as ``uint8`` arrays of shape ``N x H x W x C`` (C = 1 or 3) and turned into
model input (``float32``, ``N x C x H x W`` in [0, 1]) only batch by batch. Text keeps two
views of every document: its TF-IDF row (a SciPy CSR matrix, the classifier features) and
its sequence of vocabulary indices (:class:`Documents`, used as secrets and for scoring).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

Modality = Literal["image", "text"]


@dataclass(frozen=True, eq=False)
class Documents:
    """Variable-length token sequences stored flat: ``tokens[offsets[i]:offsets[i + 1]]``.

    Example:
        >>> docs = Documents.from_lists([[3, 1], [], [2]])
        >>> len(docs), docs[0].tolist(), docs[1].tolist(), docs.lengths().tolist()
        (3, [3, 1], [], [2, 0, 1])
    """

    tokens: np.ndarray  # int32, all documents concatenated
    offsets: np.ndarray  # int64, len(documents) + 1

    @classmethod
    def from_lists(cls, docs: list[list[int]] | list[np.ndarray]) -> Documents:
        """Builds from a list of index sequences."""
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = [np.asarray(d, dtype=np.int32) for d in docs]
        tokens = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int32)
        return cls(tokens.astype(np.int32, copy=False), offsets)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        """Number of tokens of each document."""
        return np.diff(self.offsets)

    def take(self, indices: np.ndarray) -> Documents:
        """Returns the documents at ``indices``, in that order."""
        return Documents.from_lists([self[int(i)] for i in indices])


@dataclass(frozen=True, eq=False)
class Split:
    """One split (train or test) of a dataset.

    Attributes:
        x: ``uint8`` images ``N x H x W x C`` or a ``float32`` CSR matrix ``N x F`` for text.
        y: ``int64`` class indices, shape ``N``.
        documents: for text, each document's vocabulary-index sequence; otherwise ``None``.
    """

    x: np.ndarray | sp.csr_matrix
    y: np.ndarray
    documents: Documents | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, indices: np.ndarray) -> Split:
        """Returns the rows at ``indices``, in that order."""
        docs = self.documents.take(indices) if self.documents is not None else None
        return Split(self.x[indices], self.y[indices], docs)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset with train and test splits.

    Attributes:
        name: Registry name it was created with.
        modality: ``"image"`` or ``"text"``.
        classes: Class names, index = label.
        train: Training split.
        test: Test split.
        vocabulary: For text, the feature names (index = TF-IDF column = token id).
        source: Where it was read from (archive path or ``"embedded"``).
    """

    name: str
    modality: Modality
    classes: tuple[str, ...]
    train: Split
    test: Split
    vocabulary: tuple[str, ...] | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input: ``(C, H, W)`` for images, ``(F,)`` for text."""
        if self.modality == "image":
            _, h, w, c = self.train.x.shape
            return (int(c), int(h), int(w))
        return (int(self.train.x.shape[1]),)

    def summary(self) -> dict[str, Any]:
        """A JSON-able description: sizes, shape, classes."""
        return {
            "name": self.name,
            "modality": self.modality,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "source": self.source,
        }


def images_to_float(x: np.ndarray) -> np.ndarray:
    """Converts ``uint8`` images ``N x H x W x C`` to ``float32`` ``N x C x H x W`` in [0, 1].

    Example:
        >>> images_to_float(np.full((1, 2, 2, 1), 255, np.uint8)).shape
        (1, 1, 2, 2)
    """
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 images N x H x W x C, got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def subset_indices(n: int, limit: int | None, *, seed: int) -> np.ndarray:
    """Indices of a seeded random subset of ``limit`` of ``n`` rows, kept in original order.

    Example:
        >>> subset_indices(10, 3, seed=0).tolist() == sorted(subset_indices(10, 3, seed=0).tolist())
        True
    """
    if limit is None or limit >= n:
        return np.arange(n)
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False))
