from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covertml.data import create_dataset
from covertml.errors import ConfigError, DataFormatError, DataNotFoundError


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def valid(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "x_train": rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": rng.integers(0, 256, (3, 5, 4), dtype=np.uint8),
        "y_test": np.array([2, 1, 0], dtype=np.int32),
    }


def test_npz_adds_channel_and_default_classes(tmp_path: Path) -> None:
    arrays = valid(np.random.default_rng(0))
    path = save_npz(tmp_path / "d.npz", **arrays)
    ds = create_dataset(f"npz:{path}")
    assert ds.classes == ("0", "1", "2")
    assert ds.train.x.shape == (6, 5, 4, 1) and ds.input_shape == (1, 5, 4)
    np.testing.assert_array_equal(ds.train.x[..., 0], arrays["x_train"])
    assert ds.test.y.dtype == np.int64 and ds.test.y.tolist() == [2, 1, 0]


def test_npz_rgb_with_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 3, 3, 3), dtype=np.uint8)
    path = save_npz(tmp_path / "d.npz", x_train=x, y_train=np.array([0, 1, 1, 0]), x_test=x[:2],
                    y_test=np.array([1, 0]), classes=np.array(["cat", "dog"]))  # fmt: skip
    ds = create_dataset(f"npz:{path}", train_limit=2)
    assert ds.classes == ("cat", "dog") and ds.train.x.shape == (2, 3, 3, 3)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"x_train": np.zeros((6, 5, 4), np.float32)}, "dtype float32, expected uint8"),
        ({"x_train": np.zeros((6, 5, 4, 2), np.uint8)}, "expected N x H x W"),
        ({"x_test": np.zeros((3, 4, 4), np.uint8)}, "same H x W x C"),
        ({"y_train": np.zeros(6, np.float64)}, "expected integers"),
        ({"y_train": np.zeros(5, np.int64)}, r"expected \(6,\)"),
        ({"y_test": np.array([0, -1, 0])}, "negative"),
        ({"classes": np.array(["a", "b"])}, "label 2 but only 2 classes"),
        ({"classes": np.array([1, 2, 3])}, "1-D str array"),
    ],
)
def test_npz_validation(tmp_path: Path, change: dict[str, np.ndarray], pattern: str) -> None:
    arrays = valid(np.random.default_rng(0)) | change
    path = save_npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataFormatError, match=pattern) as info:
        create_dataset(f"npz:{path}")
    message = str(info.value)
    assert "\n" not in message and " -- " in message and str(path) in message


def test_npz_missing_key_pickle_and_file(tmp_path: Path) -> None:
    arrays = valid(np.random.default_rng(0))
    del arrays["y_test"]
    with pytest.raises(DataFormatError, match="y_test"):
        create_dataset(f"npz:{save_npz(tmp_path / 'a.npz', **arrays)}")
    obj = valid(np.random.default_rng(0)) | {"classes": np.array([{"a": 1}], dtype=object)}
    with pytest.raises(DataFormatError, match="pickle"):
        create_dataset(f"npz:{save_npz(tmp_path / 'b.npz', **obj)}")
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match=r"c\.npz"):
        create_dataset(f"npz:{tmp_path / 'c.npz'}")
    with pytest.raises(DataNotFoundError):
        create_dataset(f"npz:{tmp_path / 'missing.npz'}")


def make_image(path: Path, size: tuple[int, int], mode: str, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, colour).save(path)  # type: ignore[arg-type]


def folder(root: Path, mode: str = "L", sizes: dict[str, tuple[int, int]] | None = None) -> Path:
    sizes = sizes or {}
    layout = {"train/dog": ["b.png", "a.png"], "train/cat": ["x.bmp"], "test/cat": ["t.png"]}
    for i, (sub, names) in enumerate(sorted(layout.items())):
        for j, name in enumerate(names):
            make_image(root / sub / name, sizes.get(name, (6, 4)), mode, 10 * i + j)
    (root / "train" / "dog" / "notes.txt").write_text("ignored")
    (root / "train" / "dog" / ".hidden.png").write_bytes(b"ignored")
    return root


def test_imagefolder_gray(tmp_path: Path) -> None:
    ds = create_dataset(f"imagefolder:{folder(tmp_path)}")
    assert ds.classes == ("cat", "dog")
    assert ds.train.x.shape == (3, 4, 6, 1) and ds.train.x.dtype == np.uint8
    assert ds.train.y.tolist() == [0, 1, 1] and ds.test.y.tolist() == [0]
    # order (class, file name): cat/x.bmp, dog/a.png, dog/b.png; values set by folder()
    assert [int(v) for v in ds.train.x[:, 0, 0, 0]] == [10, 21, 20]
    assert int(ds.test.x[0, 0, 0, 0]) == 0


def test_imagefolder_color_resize_and_cache(tmp_path: Path) -> None:
    root = folder(tmp_path, sizes={"a.png": (8, 8)})
    with pytest.raises(DataFormatError, match=r"size=\(H, W\)") as info:
        create_dataset(f"imagefolder:{root}")
    assert "a.png" in str(info.value)
    make_image(root / "train" / "cat" / "y.png", (6, 4), "RGB", 99)
    ds = create_dataset(f"imagefolder:{root}", size=(5, 3))
    assert ds.train.x.shape == (4, 5, 3, 3) and ds.test.x.shape == (1, 5, 3, 3)
    np.testing.assert_array_equal(ds.train.x[1, 2, 1], [99, 156, 7])  # cat/y.png
    gray = create_dataset(f"imagefolder:{root}", size=(5, 3), color=False)
    assert gray.train.x.shape[-1] == 1
    with pytest.raises(ConfigError, match="size"):
        create_dataset(f"imagefolder:{root}", size=(0, 3))


def test_imagefolder_errors(tmp_path: Path) -> None:
    root = folder(tmp_path / "a")
    (root / "train" / "cat" / "x.bmp").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match=r"x\.bmp"):
        create_dataset(f"imagefolder:{root}")
    root = folder(tmp_path / "b")
    (root / "train" / "bird").mkdir()
    with pytest.raises(DataFormatError, match="bird"):
        create_dataset(f"imagefolder:{root}")
    root = folder(tmp_path / "c")
    make_image(root / "test" / "horse" / "h.png", (6, 4), "L", 1)
    with pytest.raises(DataFormatError, match="horse"):
        create_dataset(f"imagefolder:{root}")
    root = tmp_path / "d"
    make_image(root / "train" / "cat" / "a.png", (6, 4), "L", 1)
    with pytest.raises(DataNotFoundError, match="test"):
        create_dataset(f"imagefolder:{root}")


def test_imagefolder_uses_cache_until_files_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import covertml.data.generic as generic

    root = folder(tmp_path)
    first = create_dataset(f"imagefolder:{root}")

    def fail(*args: object, **kwargs: object) -> dict[str, np.ndarray]:
        raise AssertionError("decoded again")

    monkeypatch.setattr(generic, "decode_folder", fail)
    np.testing.assert_array_equal(create_dataset(f"imagefolder:{root}").train.x, first.train.x)
    make_image(root / "test" / "dog" / "new.png", (6, 4), "L", 3)
    with pytest.raises(AssertionError, match="decoded again"):
        create_dataset(f"imagefolder:{root}")
