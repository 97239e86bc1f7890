"""Labeled Faces in the Wild: gender (``lfw-gender``) and identity (``lfw-identity``) tasks.

Both read ``lfw/lfw_crops_125x94.tar.gz`` (``lfw_crops/<Person>/<Person>_NNNN.jpg``, the
125x94 crop scikit-learn uses, JPEG q90). The archive is decoded once, in one streaming pass,
into a cache of *all* 13,233 images at the requested ``resize`` / ``color`` (rows ordered by
path); both datasets are then derived from that cache.

* Size: ``h = int(125 * resize)``, ``w = int(94 * resize)`` exactly as scikit-learn's
  ``fetch_lfw_people`` computes it (0.5 gives 62x47). Resampling uses Pillow's LANCZOS filter
  (anti-aliased; scikit-learn uses Pillow's default, bicubic). ``resize=1`` keeps 125x94.
* Colour: RGB, or with ``color=False`` 8-bit ITU-R BT.601 luma (Pillow ``convert("L")``).
* ``lfw-gender`` takes gender from ``lfw/labels.csv`` (``path,person,gender``, ``M``/``F``)
  and drops the images with an empty label. The split is a seeded (seed 0) stratified
  random split of *images*, so a person may appear in both splits.
* ``lfw-identity`` (the offline stand-in for FaceScrub) keeps people with at least
  ``min_faces`` images; classes are their names, sorted. Each person's images are split
  on their own (seed 0): ``round(n * test_fraction)`` (at least 1, at most n - 1) go to test.

Within each split rows keep the archive's path order (person name, then image number).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from PIL import Image

from covertml.data.archive import decode_image, image_to_array, iter_tar_files, require_file
from covertml.data.base import Dataset, Split
from covertml.data.cache import (
    cached_arrays,
    file_fingerprint,
    strings_from_array,
    strings_to_array,
)
from covertml.data.registry import register_dataset, require_archive
from covertml.errors import ConfigError, DataFormatError

ARCHIVE = "lfw/lfw_crops_125x94.tar.gz"
LABELS = "lfw/labels.csv"
FULL_HEIGHT, FULL_WIDTH = 125, 94
GENDER_CLASSES: tuple[str, ...] = ("female", "male")
_GENDER_CODES = {"F": 0, "M": 1}
_MEMBER = re.compile(r"^lfw_crops/([^/]+/[^/]+\.jpe?g)$", re.IGNORECASE)
_SEED = 0
_FORMAT_VERSION = 1


def output_size(resize: float) -> tuple[int, int]:
    """``(height, width)`` of the images for ``resize``, rounded like scikit-learn.

    Example:
        >>> output_size(0.5), output_size(1.0)
        ((62, 47), (125, 94))
    """
    if not isinstance(resize, int | float) or not 0 < resize <= 4:
        raise ConfigError(f"resize must be in (0, 4], got {resize!r}", fix="use e.g. resize=0.5")
    h, w = int(FULL_HEIGHT * resize), int(FULL_WIDTH * resize)
    if h < 1 or w < 1:
        raise ConfigError(f"resize={resize} gives an empty image", fix="use e.g. resize=0.5")
    return h, w


def decode_archive(path: Path, *, resize: float, color: bool) -> dict[str, np.ndarray]:
    """Decodes every face of the archive in one pass.

    Returns:
        ``images`` (``uint8`` ``N x h x w x C``) and ``paths`` (packed ``Person/file.jpg``
        names, see :func:`~covertml.data.cache.strings_to_array`), sorted by path.

    Raises:
        DataFormatError: The archive is damaged, empty, or holds an image of the wrong size.
    """
    h, w = output_size(resize)
    rows: list[tuple[str, np.ndarray]] = []
    for name, data in iter_tar_files(path):
        match = _MEMBER.match(name)
        if match is None:
            continue
        image = decode_image(data, f"{path}:{name}")
        if image.size != (FULL_WIDTH, FULL_HEIGHT):
            raise DataFormatError(
                f"{path}:{name} is {image.size[0]}x{image.size[1]}, expected 94x125 (WxH)",
                fix="copy the original lfw_crops_125x94.tar.gz again",
            )
        image = image.convert("RGB" if color else "L")
        if (h, w) != (FULL_HEIGHT, FULL_WIDTH):
            image = image.resize((w, h), Image.Resampling.LANCZOS)
        rows.append((match.group(1), image_to_array(image, color=color)))
    if not rows:
        raise DataFormatError(
            f"{path} holds no lfw_crops/<Person>/<file>.jpg images",
            fix="copy the original lfw_crops_125x94.tar.gz again",
        )
    rows.sort(key=lambda row: row[0])
    return {
        "images": np.stack([pixels for _, pixels in rows]),
        "paths": strings_to_array([p for p, _ in rows]),
    }


def load_faces(
    dataset: str, root: Path, *, resize: float, color: bool, use_cache: bool
) -> tuple[Path, np.ndarray, tuple[str, ...]]:
    """All faces (cached): the archive path, the images and their ``Person/file.jpg`` paths."""
    path = require_archive(dataset, root)
    key = {"archive": file_fingerprint(path), "resize": float(resize), "color": bool(color)}

    def build() -> dict[str, np.ndarray]:
        return decode_archive(path, resize=resize, color=color)

    arrays = cached_arrays("lfw", {**key, "format": _FORMAT_VERSION}, build, use_cache=use_cache)
    return path, arrays["images"], strings_from_array(arrays["paths"])


def read_gender_labels(path: Path) -> dict[str, str]:
    """``{Person/file.jpg: "M" | "F" | ""}`` from ``labels.csv``."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return {row["path"]: (row["gender"] or "").strip() for row in csv.DictReader(handle)}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError) as exc:
        raise DataFormatError(
            f"cannot read {path} ({type(exc).__name__}: {exc})",
            fix="copy the original labels.csv again",
        ) from exc


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ConfigError(
            f"test_fraction must be in (0, 1), got {test_fraction}", fix="use e.g. 0.2"
        )


@register_dataset(
    "lfw-gender",
    modality="image",
    help="LFW faces, gender task (female/male), 62x47 RGB by default; 9 unlabelled dropped",
    archive=ARCHIVE,
    default_model="face-cnn",
    n_train=10579,
    n_test=2645,
    classes=2,
)
def load_gender(
    *,
    root: Path,
    use_cache: bool = True,
    resize: float = 0.5,
    color: bool = True,
    test_fraction: float = 0.2,
) -> Dataset:
    """LFW gender: 13,224 labelled faces, stratified seeded 80/20 split of images.

    Args:
        root: The data directory holding ``lfw/``.
        use_cache: Read/write the decoded-image cache.
        resize: Scale of the 125x94 crop (0.5 gives 62x47).
        color: RGB (3 channels) or BT.601 luma (1 channel).
        test_fraction: Share of images in the test split.
    """
    _check_fraction(test_fraction)
    labels_path = require_file(root / LABELS, LABELS, "lfw-gender")
    path, images, paths = load_faces(
        "lfw-gender", root, resize=resize, color=color, use_cache=use_cache
    )
    genders = read_gender_labels(labels_path)
    missing = [p for p in paths if p not in genders]
    if missing:
        raise DataFormatError(
            f"{labels_path} has no row for {len(missing)} images (e.g. {missing[0]})",
            fix="use the labels.csv that came with lfw_crops_125x94.tar.gz",
        )
    keep = np.array([i for i, p in enumerate(paths) if genders[p] in _GENDER_CODES])
    y = np.array([_GENDER_CODES[genders[paths[i]]] for i in keep], dtype=np.int64)
    from sklearn.model_selection import train_test_split

    train_pos, test_pos = train_test_split(
        np.arange(len(keep)), test_size=test_fraction, random_state=_SEED, stratify=y
    )
    train_pos, test_pos = np.sort(train_pos), np.sort(test_pos)
    return Dataset(
        name="lfw-gender",
        modality="image",
        classes=GENDER_CLASSES,
        train=Split(images[keep[train_pos]], y[train_pos]),
        test=Split(images[keep[test_pos]], y[test_pos]),
        source=str(path),
        extra={"dropped_unlabelled": len(paths) - len(keep)},
    )


@register_dataset(
    "lfw-identity",
    modality="image",
    help="LFW faces, identity task (FaceScrub stand-in): people with >= min_faces images",
    archive=ARCHIVE,
    default_model="face-cnn",
    n_train=2421,
    n_test=602,
    classes=62,
)
def load_identity(
    *,
    root: Path,
    use_cache: bool = True,
    min_faces: int = 20,
    resize: float = 0.5,
    color: bool = True,
    test_fraction: float = 0.2,
) -> Dataset:
    """LFW identity: people with at least ``min_faces`` images, per-person seeded 80/20 split.

    Args:
        root: The data directory holding ``lfw/``.
        use_cache: Read/write the decoded-image cache.
        min_faces: Keep people with at least this many images (20: 62 people, 3,023 images;
            10: 158 people, 4,324 images). At least 2, so every person is in both splits.
        resize: Scale of the 125x94 crop (0.5 gives 62x47).
        color: RGB (3 channels) or BT.601 luma (1 channel).
        test_fraction: Share of each person's images in the test split.
    """
    _check_fraction(test_fraction)
    if isinstance(min_faces, bool) or not isinstance(min_faces, int) or min_faces < 2:
        raise ConfigError(f"min_faces must be an integer >= 2, got {min_faces!r}", fix="use 20")
    path, images, paths = load_faces(
        "lfw-identity", root, resize=resize, color=color, use_cache=use_cache
    )
    people = np.array([p.split("/", 1)[0] for p in paths])
    names, counts = np.unique(people, return_counts=True)
    classes = tuple(str(n) for n, c in zip(names, counts, strict=True) if c >= min_faces)
    if not classes:
        raise ConfigError(
            f"no person has {min_faces} or more images", fix="lower min_faces (e.g. 20)"
        )
    label_of = {person: i for i, person in enumerate(classes)}
    y = np.array([label_of.get(str(p), -1) for p in people], dtype=np.int64)
    rng = np.random.default_rng(_SEED)
    is_test = np.zeros(len(paths), dtype=bool)
    for label in range(len(classes)):
        rows = rng.permutation(np.flatnonzero(y == label))
        is_test[rows[: min(len(rows) - 1, max(1, round(len(rows) * test_fraction)))]] = True
    train, test = np.flatnonzero((y >= 0) & ~is_test), np.flatnonzero(is_test)
    return Dataset(
        name="lfw-identity",
        modality="image",
        classes=classes,
        train=Split(images[train], y[train]),
        test=Split(images[test], y[test]),
        source=str(path),
        extra={"min_faces": min_faces},
    )
