"""Secrets: what the malicious training code steals from the training set it is given.

For images, the first N training images as 8-bit grayscale (ITU-R BT.601 luma); for text,
the first N training documents as sequences of vocabulary indices. A :class:`Secret` is
one flat array of symbols (pixels 0-255, or token ids 0..V-1) plus the shape that splits it
back into items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from covertml.data.base import Dataset
from covertml.errors import ConfigError

Kind = Literal["image", "text"]


def grayscale(images: np.ndarray) -> np.ndarray:
    """BT.601 luma ``round(0.299 R + 0.587 G + 0.114 B)`` of ``uint8`` ``N x H x W x C`` images.

    Example:
        >>> grayscale(np.array([[[[255, 0, 0]]]], np.uint8)).tolist()
        [[[76]]]
    """
    if images.ndim != 4:
        raise ValueError(f"expected N x H x W x C images, got shape {images.shape}")
    if images.shape[-1] == 1:
        return images[..., 0].astype(np.uint8)
    weights = np.array([0.299, 0.587, 0.114])
    luma: np.ndarray = images[..., :3].astype(np.float64) @ weights
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class Secret:
    """A flat run of symbols and how it splits into items.

    Attributes:
        kind: ``"image"`` or ``"text"``.
        values: ``int64`` symbols: pixels (0-255) or token ids (0..levels-1).
        levels: Size of the symbol alphabet (256, or the vocabulary size).
        image_shape: ``(H, W)`` of each image (images only).
        lengths: Tokens per document (text only).
    """

    kind: Kind
    values: np.ndarray
    levels: int
    image_shape: tuple[int, int] | None = None
    lengths: tuple[int, ...] | None = None

    @property
    def count(self) -> int:
        """Number of items (images or documents)."""
        if self.kind == "image":
            assert self.image_shape is not None
            return int(self.values.size // math.prod(self.image_shape))
        assert self.lengths is not None
        return len(self.lengths)

    @property
    def bits_per_symbol(self) -> int:
        """Bits needed per symbol: 8 for pixels, ``ceil(log2 V)`` for tokens."""
        return max(1, math.ceil(math.log2(self.levels)))

    def images(self) -> np.ndarray:
        """The images, ``uint8`` ``N x H x W``."""
        assert self.image_shape is not None
        return self.values.astype(np.uint8).reshape(-1, *self.image_shape)

    def documents(self) -> list[np.ndarray]:
        """The documents, one token-id array each."""
        assert self.lengths is not None
        cuts = np.cumsum(self.lengths)[:-1]
        return list(np.split(self.values, cuts)) if self.lengths else []

    def spec(self) -> dict[str, Any]:
        """The secret's shape, without its values (stored in the key)."""
        out: dict[str, Any] = {"kind": self.kind, "count": self.count, "levels": self.levels}
        if self.kind == "image":
            out["image_shape"] = list(self.image_shape or ())
        else:
            out["lengths"] = list(self.lengths or ())
        return out

    def with_values(self, values: np.ndarray) -> Secret:
        """A secret of the same shape holding ``values`` (e.g. decoded ones)."""
        return Secret(
            self.kind, values.astype(np.int64), self.levels, self.image_shape, self.lengths
        )

    @classmethod
    def from_spec(cls, spec: dict[str, Any], values: np.ndarray) -> Secret:
        """Rebuilds a secret from :meth:`spec` and its values."""
        kind = spec["kind"]
        if kind == "image":
            h, w = spec["image_shape"]
            return cls("image", values.astype(np.int64), int(spec["levels"]), (int(h), int(w)))
        return cls(
            "text", values.astype(np.int64), int(spec["levels"]), None, tuple(spec["lengths"])
        )

    @staticmethod
    def spec_symbols(spec: dict[str, Any]) -> int:
        """Total symbols of a secret described by :meth:`spec`."""
        if spec["kind"] == "image":
            return int(spec["count"]) * math.prod(int(s) for s in spec["image_shape"])
        return int(sum(spec["lengths"]))

    def size_of(self, n: int) -> int:
        """Symbols in the first ``n`` items."""
        if self.kind == "image":
            assert self.image_shape is not None
            return n * math.prod(self.image_shape)
        assert self.lengths is not None
        return int(sum(self.lengths[:n]))

    def first(self, n: int) -> Secret:
        """The first ``n`` items."""
        if not 0 <= n <= self.count:
            raise ValueError(f"cannot take {n} of {self.count} items")
        lengths = None if self.lengths is None else self.lengths[:n]
        return Secret(
            self.kind, self.values[: self.size_of(n)], self.levels, self.image_shape, lengths
        )

    def fit_count(self, capacity_symbols: int) -> int:
        """How many leading items fit into ``capacity_symbols`` symbols."""
        if self.kind == "image":
            return min(self.count, capacity_symbols // self.size_of(1))
        cum = np.cumsum(self.lengths or ())
        return int(np.searchsorted(cum, capacity_symbols, side="right"))


def secret_from_dataset(
    dataset: Dataset, *, max_items: int | None = None, max_doc_tokens: int | None = None
) -> Secret:
    """The secret the training code would take from ``dataset``: its first training items.

    Args:
        dataset: The training data the (malicious) code is handed.
        max_items: Take at most this many items (default: every training item).
        max_doc_tokens: Truncate each document to this many tokens (text only).

    Example:
        >>> from covertml.data import create_dataset
        >>> s = secret_from_dataset(create_dataset("digits"), max_items=3)
        >>> s.kind, s.count, s.images().shape
        ('image', 3, (3, 8, 8))
    """
    n = len(dataset.train) if max_items is None else min(max_items, len(dataset.train))
    if dataset.modality == "image":
        images = grayscale(np.asarray(dataset.train.x[:n]))
        return Secret("image", images.reshape(-1).astype(np.int64), 256, images.shape[1:3])
    docs = dataset.train.documents
    if docs is None or dataset.vocabulary is None:
        raise ConfigError(
            f"dataset {dataset.name!r} has no token sequences to take as secrets",
            fix="use a text dataset loaded by covertml (20news, imdb)",
        )
    parts = [docs[i][:max_doc_tokens] if max_doc_tokens else docs[i] for i in range(n)]
    values = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    return Secret("text", values, len(dataset.vocabulary), None, tuple(len(p) for p in parts))


def check_fits(secret: Secret, n_items: int | None, capacity_symbols: int, *, what: str) -> Secret:
    """The first ``n_items`` items (default: as many as fit), or a clear over-capacity error."""
    fit = secret.fit_count(capacity_symbols)
    if n_items is None:
        if fit == 0:
            raise ConfigError(
                f"not even one secret item fits in {what}",
                fix="use a larger model or a smaller secret",
            )
        return secret.first(fit)
    if n_items > secret.count:
        raise ConfigError(
            f"asked for {n_items} secret items but the training set has {secret.count}",
            fix=f"use --n-secrets {secret.count} or fewer",
        )
    if n_items > fit:
        raise ConfigError(
            f"{n_items} secret items need {secret.size_of(n_items):,} symbols but {what} holds "
            f"{capacity_symbols:,} (= {fit} items)",
            fix=f"use --n-secrets {fit} or fewer, or a larger model",
        )
    return secret.first(n_items)
