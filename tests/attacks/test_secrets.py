from __future__ import annotations

import numpy as np
import pytest

from covertml.attacks.secrets import check_fits, grayscale, secret_from_dataset
from covertml.data.base import Dataset, Split
from covertml.errors import ConfigError


def test_grayscale_is_bt601_luma() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4, 3, 5, 3)).astype(np.uint8)
    expected = np.floor(
        0.299 * rgb[..., 0].astype(float) + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2] + 0.5
    )
    assert np.array_equal(grayscale(rgb), expected.astype(np.uint8))
    gray = rgb[..., :1]
    assert np.array_equal(grayscale(gray), gray[..., 0])


def test_image_secret_is_the_first_training_images(digits) -> None:
    secret = secret_from_dataset(digits, max_items=5)
    assert secret.count == 5 and secret.levels == 256 and secret.bits_per_symbol == 8
    assert np.array_equal(secret.images(), digits.train.x[:5, :, :, 0])
    assert secret.first(2).values.size == 2 * 64


def test_text_secret_is_the_first_documents(toy_text) -> None:
    secret = secret_from_dataset(toy_text, max_items=3)
    docs = secret.documents()
    assert [d.tolist() for d in docs] == [toy_text.train.documents[i].tolist() for i in range(3)]
    assert secret.levels == 300 and secret.bits_per_symbol == 9  # ceil(log2 300)


def test_fit_counts_and_over_capacity_error(digits, toy_text) -> None:
    images = secret_from_dataset(digits)
    assert check_fits(images, None, 64 * 10 + 63, what="x").count == 10
    message = r"need 704 symbols but the model holds 703 \(= 10 items\)"
    with pytest.raises(ConfigError, match=message):
        check_fits(images, 11, 703, what="the model")
    text = secret_from_dataset(toy_text)
    lengths = text.lengths
    assert lengths is not None
    assert check_fits(text, None, sum(lengths[:4]), what="x").count == 4


def test_dataset_without_documents_is_refused() -> None:
    import scipy.sparse as sp

    ds = Dataset(
        "t",
        "text",
        ("a",),
        Split(sp.csr_matrix((2, 3)), np.zeros(2, np.int64)),
        Split(sp.csr_matrix((1, 3)), np.zeros(1, np.int64)),
    )
    with pytest.raises(ConfigError, match="no token sequences"):
        secret_from_dataset(ds)
