from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import covertml.data.cifar10 as cifar10
from covertml.data import create_dataset
from covertml.errors import DataFormatError, DataNotFoundError

CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
REL = "cifar10/cifar10_jpg.tar.gz"


def colour(split: str, cls: int, number: int) -> tuple[int, int, int]:
    return (20 + 20 * cls, 40 + 60 * number, 200 if split == "train" else 60)


@pytest.fixture
def archive(
    tmp_path: Path, tar_writer: Callable[..., Path], jpeg: Callable[..., bytes]
) -> dict[str, bytes]:
    files: dict[str, bytes] = {"cifar10-jpg/README.txt": b"not an image"}
    # Written in a scrambled order: the loader must impose its own.
    for split, count in (("test", 1), ("train", 3)):
        for cls in reversed(range(10)):
            for number in range(count):
                files[f"cifar10-jpg/{split}/{CLASSES[cls]}/{number:04d}.jpg"] = jpeg(
                    colour(split, cls, number), (32, 32), 75
                )
    tar_writer(tmp_path / REL, files)
    return files


def expected(files: dict[str, bytes], split: str) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for name, data in files.items():
        parts = name.split("/")
        if len(parts) == 4 and parts[1] == split:
            cls, number = CLASSES.index(parts[2]), int(parts[3][:4])
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            rows.append(((number, cls), pixels, cls))
    rows.sort(key=lambda r: r[0])
    return np.stack([r[1] for r in rows]), np.array([r[2] for r in rows])


def test_loads_shapes_labels_and_interleaved_order(
    tmp_path: Path, archive: dict[str, bytes]
) -> None:
    ds = create_dataset("cifar10", data_dir=tmp_path)
    assert ds.classes == tuple(CLASSES)
    assert ds.modality == "image" and ds.input_shape == (3, 32, 32)
    assert ds.train.x.dtype == np.uint8 and ds.train.x.shape == (30, 32, 32, 3)
    assert ds.test.x.shape == (10, 32, 32, 3)
    assert ds.train.y.dtype == np.int64
    # first ten training images: one per class, in class order (file 0000 of each class)
    assert ds.train.y[:10].tolist() == list(range(10))
    assert ds.train.y[10:20].tolist() == list(range(10))
    for split in ("train", "test"):
        x, y = expected(archive, split)
        got = getattr(ds, split)
        np.testing.assert_array_equal(got.x, x)
        np.testing.assert_array_equal(got.y, y)
    # pixels are those of the intended image (JPEG of a solid colour: close to it)
    mean = ds.train.x[13].reshape(-1, 3).mean(axis=0)  # class 3, file 0001
    np.testing.assert_allclose(mean, colour("train", 3, 1), atol=3)


def test_second_load_uses_cache(
    tmp_path: Path, archive: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = create_dataset("cifar10", data_dir=tmp_path)

    def fail(path: Path) -> dict[str, np.ndarray]:
        raise AssertionError("decoded again")

    monkeypatch.setattr(cifar10, "decode_archive", fail)
    second = create_dataset("cifar10", data_dir=tmp_path)
    np.testing.assert_array_equal(first.train.x, second.train.x)
    np.testing.assert_array_equal(first.test.y, second.test.y)
    with pytest.raises(AssertionError, match="decoded again"):
        create_dataset("cifar10", data_dir=tmp_path, use_cache=False)


def test_limits_take_ordered_subsets(tmp_path: Path, archive: dict[str, bytes]) -> None:
    full = create_dataset("cifar10", data_dir=tmp_path)
    ds = create_dataset("cifar10", data_dir=tmp_path, train_limit=7, test_limit=4, seed=3)
    assert len(ds.train) == 7 and len(ds.test) == 4
    flat = [row.tobytes() for row in full.train.x]
    positions = [flat.index(row.tobytes()) for row in ds.train.x]
    assert positions == sorted(positions)
    assert ds.train.y.tolist() == [int(full.train.y[p]) for p in positions]


def test_missing_archive_names_relative_path(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=REL) as info:
        create_dataset("cifar10", data_dir=tmp_path)
    assert "COVERTML_DATA" in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_archive(tmp_path: Path, archive: dict[str, bytes], damage: str) -> None:
    path = tmp_path / REL
    blob = path.read_bytes()
    path.write_bytes(
        blob[: len(blob) // 2] if damage == "truncate" else b"\x1f\x8bnot really gzip" * 50
    )
    with pytest.raises(DataFormatError, match="copy it again") as info:
        create_dataset("cifar10", data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_unexpected_class_folder(
    tmp_path: Path, tar_writer: Callable[..., Path], jpeg: Callable[..., bytes]
) -> None:
    tar_writer(tmp_path / REL, {"cifar10-jpg/train/zebra/0000.jpg": jpeg((1, 2, 3), (32, 32))})
    with pytest.raises(DataFormatError, match="zebra"):
        create_dataset("cifar10", data_dir=tmp_path)
