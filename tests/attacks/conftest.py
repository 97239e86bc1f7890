from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from covertml.data import create_dataset
from covertml.data.base import Dataset, Documents, Split


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return create_dataset("digits")


@pytest.fixture(scope="session")
def toy_text() -> Dataset:
    """A small text dataset: 40 documents over a 300-word vocabulary."""
    rng = np.random.default_rng(0)
    vocab = tuple(f"w{i:03d}" for i in range(300))
    docs = [rng.integers(0, 300, rng.integers(5, 15)).tolist() for _ in range(60)]
    rows = np.concatenate([[i] * len(d) for i, d in enumerate(docs)])
    cols = np.concatenate(docs)
    x = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(60, 300))
    y = (x[:, :150].sum(1) > x[:, 150:].sum(1)).A1.astype(np.int64)
    split = lambda a, b: Split(x[a:b], y[a:b], Documents.from_lists(docs[a:b]))  # noqa: E731
    return Dataset(
        name="toy-text",
        modality="text",
        classes=("a", "b"),
        train=split(0, 40),
        test=split(40, 60),
        vocabulary=vocab,
    )
