"""CIFAR-10 from the offline JPEG archive ``cifar10/cifar10_jpg.tar.gz``.

The archive holds ``cifar10-jpg/{train,test}/<class>/NNNN.jpg`` (5,000 / 1,000 files per
class, numbered ``0000``... within each class folder), stored as JPEG quality 75; the decoded
pixels are the ground truth. The archive carries no original CIFAR order, so each split is
ordered by **(file number, class index)**: ``airplane/0000, automobile/0000, ..., truck/0000,
airplane/0001, ...``. Classes therefore interleave and "the first N training images" (the
secret of the attacks) is a balanced mix of all ten classes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from covertml.data.archive import decode_image, image_to_array, iter_tar_files
from covertml.data.base import Dataset, Split
from covertml.data.cache import cached_arrays, file_fingerprint
from covertml.data.registry import register_dataset, require_archive
from covertml.errors import DataFormatError

NAME = "cifar10"
ARCHIVE = "cifar10/cifar10_jpg.tar.gz"
#: The standard CIFAR-10 label order (index = label).
CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SIZE = 32
_MEMBER = re.compile(r"^cifar10-jpg/(train|test)/([^/]+)/(\d+)\.jpe?g$", re.IGNORECASE)
_FORMAT_VERSION = 1


def _order(numbers: list[int], labels: list[int]) -> np.ndarray:
    """Indices that sort rows by (file number, class index)."""
    return np.lexsort((np.asarray(labels, dtype=np.int64), np.asarray(numbers, dtype=np.int64)))


def decode_archive(path: Path) -> dict[str, np.ndarray]:
    """Decodes the whole archive in one streaming pass.

    Args:
        path: The ``cifar10_jpg.tar.gz`` archive.

    Returns:
        ``x_train``/``x_test`` (``uint8`` ``N x 32 x 32 x 3``) and ``y_train``/``y_test``
        (``int64``), each split ordered by (file number, class index).

    Raises:
        DataFormatError: The archive is damaged, has an unknown class folder, an image that
            is not 32x32, or no images for a split.
    """
    index = {name: i for i, name in enumerate(CLASSES)}
    images: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    numbers: dict[str, list[int]] = {"train": [], "test": []}
    for name, data in iter_tar_files(path):
        match = _MEMBER.match(name)
        if match is None:
            continue
        split, cls, number = match.group(1), match.group(2), int(match.group(3))
        if cls not in index:
            raise DataFormatError(
                f"{path} has an unexpected class folder {cls!r} (in {name})",
                fix=f"the archive must hold only the CIFAR-10 classes {', '.join(CLASSES)}",
            )
        pixels = image_to_array(decode_image(data, f"{path}:{name}"), color=True)
        if pixels.shape != (SIZE, SIZE, 3):
            raise DataFormatError(
                f"{path}:{name} is {pixels.shape[1]}x{pixels.shape[0]}, expected 32x32",
                fix="copy the original CIFAR-10 archive again",
            )
        images[split].append(pixels)
        labels[split].append(index[cls])
        numbers[split].append(number)
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        if not images[split]:
            raise DataFormatError(
                f"{path} has no images under cifar10-jpg/{split}/",
                fix="copy the original CIFAR-10 archive again",
            )
        order = _order(numbers[split], labels[split])
        out[f"x_{split}"] = np.stack(images[split])[order]
        out[f"y_{split}"] = np.asarray(labels[split], dtype=np.int64)[order]
    return out


@register_dataset(
    NAME,
    modality="image",
    help="CIFAR-10: 32x32 RGB photos of 10 object classes (JPEG q75 offline copy)",
    archive=ARCHIVE,
    default_model="resnet20",
    n_train=50000,
    n_test=10000,
    classes=10,
)
def load(*, root: Path, use_cache: bool = True) -> Dataset:
    """CIFAR-10 as ``uint8`` 32x32x3 images, 50,000 train / 10,000 test.

    Args:
        root: The data directory holding ``cifar10/cifar10_jpg.tar.gz``.
        use_cache: Read/write the decoded arrays in the cache (first decode: ~10-20 s).

    Returns:
        The dataset, each split ordered by (file number, class index).
    """
    path = require_archive(NAME, root)
    key = {"archive": file_fingerprint(path), "format": _FORMAT_VERSION}
    arrays = cached_arrays(NAME, key, lambda: decode_archive(path), use_cache=use_cache)
    return Dataset(
        name=NAME,
        modality="image",
        classes=CLASSES,
        train=Split(arrays["x_train"], arrays["y_train"].astype(np.int64, copy=False)),
        test=Split(arrays["x_test"], arrays["y_test"].astype(np.int64, copy=False)),
        source=str(path),
    )
