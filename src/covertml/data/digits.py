"""scikit-learn's bundled 8x8 digits: the embedded default that needs no files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covertml.data.base import Dataset, Split
from covertml.data.registry import register_dataset


@register_dataset(
    "digits",
    modality="image",
    help="scikit-learn's bundled 8x8 handwritten digits (embedded, no files needed)",
    default_model="mlp",
    n_train=1437,
    n_test=360,
    classes=10,
)
def load(*, root: Path, use_cache: bool = True, test_fraction: float = 0.2) -> Dataset:
    """Digits as ``uint8`` 8x8x1 images (0-16 scaled to 0-255), stratified seeded split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, random_state=0, stratify=labels
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return Dataset(
        name="digits",
        modality="image",
        classes=tuple(str(i) for i in range(10)),
        train=Split(images[train_idx], labels[train_idx]),
        test=Split(images[test_idx], labels[test_idx]),
        source="embedded (sklearn.datasets.load_digits)",
    )
