"""Loads the real offline archives (``COVERTML_DATA``) and checks the sizes of data/README.md.

The first load decodes and fills the user cache; the second must come from the cache.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from covertml.data import DATASETS, Dataset, create_dataset

pytestmark = [pytest.mark.data, pytest.mark.slow]


def load_twice(name: str, data: Path, archive: str, **options: Any) -> Dataset:
    if not (data / archive).is_file():
        pytest.skip(f"{archive} not in COVERTML_DATA")
    t0 = time.perf_counter()
    create_dataset(name, data_dir=data, **options)
    t1 = time.perf_counter()
    ds = create_dataset(name, data_dir=data, **options)
    t2 = time.perf_counter()
    print(f"{name} {options}: first load {t1 - t0:.2f} s, cached load {t2 - t1:.3f} s")
    assert t2 - t1 < 1.0
    if not options:  # the registry's advertised sizes match the default load
        meta = DATASETS.get(name).meta
        assert (meta["n_train"], meta["n_test"]) == (len(ds.train), len(ds.test))
        assert meta["classes"] == ds.num_classes
    return ds


def test_cifar10(real_data: Path) -> None:
    ds = load_twice("cifar10", real_data, "cifar10/cifar10_jpg.tar.gz")
    assert (len(ds.train), len(ds.test)) == (50_000, 10_000)
    assert ds.train.x.shape[1:] == (32, 32, 3) and ds.train.x.dtype == np.uint8
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert np.bincount(ds.train.y).tolist() == [5_000] * 10
    assert np.bincount(ds.test.y).tolist() == [1_000] * 10
    assert ds.train.y[:10].tolist() == list(range(10))


def test_lfw_gender(real_data: Path) -> None:
    ds = load_twice("lfw-gender", real_data, "lfw/lfw_crops_125x94.tar.gz")
    assert len(ds.train) + len(ds.test) == 13_224
    assert ds.train.x.shape[1:] == (62, 47, 3)
    assert np.bincount(np.concatenate([ds.train.y, ds.test.y])).tolist() == [2_961, 10_263]
    assert len(ds.test) == 2_645  # ceil(0.2 * 13,224)


def test_lfw_identity(real_data: Path) -> None:
    ds = load_twice("lfw-identity", real_data, "lfw/lfw_crops_125x94.tar.gz")
    assert ds.num_classes == 62 and len(ds.train) + len(ds.test) == 3_023
    assert set(ds.test.y.tolist()) == set(range(62))
    ten = create_dataset("lfw-identity", data_dir=real_data, min_faces=10)
    assert ten.num_classes == 158 and len(ten.train) + len(ten.test) == 4_324


def test_20news(real_data: Path) -> None:
    ds = load_twice("20news", real_data, "20news-bydate/20news-bydate.tar.gz")
    assert (len(ds.train), len(ds.test)) == (11_314, 7_532)
    assert ds.input_shape == (130_107,) and ds.vocabulary is not None
    assert len(ds.vocabulary) == 130_107 and ds.num_classes == 20


def test_imdb(real_data: Path) -> None:
    ds = load_twice("imdb", real_data, "imdb/aclImdb_labelled.tar.gz")
    assert (len(ds.train), len(ds.test)) == (25_000, 25_000)
    assert np.bincount(ds.train.y).tolist() == [12_500, 12_500]
    assert np.bincount(ds.test.y).tolist() == [12_500, 12_500]
    assert ds.train.documents is not None and len(ds.train.documents) == 25_000
