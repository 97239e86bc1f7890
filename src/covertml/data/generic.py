"""Your own image data: ``npz:PATH`` (arrays in one file) and ``imagefolder:PATH`` (a tree).

``npz:PATH`` reads ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally
``classes``, an array of strings) without pickle. Images are ``uint8`` ``N x H x W`` (a
channel axis is added) or ``N x H x W x C`` with C = 1 or 3; labels are integers
``0 .. k-1``; without ``classes`` the names are ``"0" .. "k-1"``.

``imagefolder:PATH`` reads ``PATH/train/<class>/<image>`` and ``PATH/test/<class>/<image>``
(png, jpg, jpeg, bmp, gif, webp; other and hidden files are ignored). Classes are the
sorted training class folders; rows are ordered by (class, file name). All images must have
one size unless ``size=(H, W)`` is given (Pillow LANCZOS resampling). The decoded arrays are
cached under a key of every file's size and modification time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from covertml.data.archive import decode_image, image_to_array
from covertml.data.base import Dataset, Split
from covertml.data.cache import cached_arrays
from covertml.data.registry import register_dataset
from covertml.errors import ConfigError, DataFormatError, DataNotFoundError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _bad(path: Path, problem: str, fix: str) -> DataFormatError:
    return DataFormatError(f"{path}: {problem}", fix=fix)


def _images(path: Path, name: str, x: np.ndarray) -> np.ndarray:
    fix = "store images as uint8 N x H x W or N x H x W x C (C = 1 or 3), 0-255"
    if x.dtype != np.uint8:
        raise _bad(path, f"{name} has dtype {x.dtype}, expected uint8", fix)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape[1:]:
        raise _bad(path, f"{name} has shape {x.shape}, expected N x H x W [x C]", fix)
    return x


def _labels(path: Path, name: str, y: np.ndarray, n: int) -> np.ndarray:
    fix = "store labels as a 1-D integer array 0 .. k-1, one per image"
    if y.dtype.kind not in "iu":
        raise _bad(path, f"{name} has dtype {y.dtype}, expected integers", fix)
    if y.shape != (n,):
        raise _bad(path, f"{name} has shape {y.shape}, expected ({n},) like its images", fix)
    if n and int(y.min()) < 0:
        raise _bad(path, f"{name} has negative labels", fix)
    return y.astype(np.int64)


@register_dataset(
    "npz",
    modality="image",
    help="your images in an .npz: x_train, y_train, x_test, y_test [, classes]",
    takes_path=True,
    default_model="mlp",
)
def load_npz(*, path: Path, use_cache: bool = True) -> Dataset:
    """Loads ``uint8`` images and integer labels from an ``.npz`` file (no pickle).

    Args:
        path: The ``.npz`` file.
        use_cache: Unused (the file is read directly).

    Raises:
        DataNotFoundError: The file does not exist.
        DataFormatError: A key is missing or an array has the wrong dtype or shape.
    """
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist", fix="pass an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in (*_NPZ_KEYS, "classes") if k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise _bad(
            path, f"not a readable .npz without pickled objects ({exc})", "use np.savez"
        ) from exc
    missing = [k for k in _NPZ_KEYS if k not in arrays]
    if missing:
        raise _bad(path, f"missing arrays {missing}", f"save it with {', '.join(_NPZ_KEYS)}")
    x_train, x_test = (_images(path, k, arrays[k]) for k in ("x_train", "x_test"))
    if x_train.shape[1:] != x_test.shape[1:]:
        raise _bad(
            path,
            f"x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}",
            "give both splits the same H x W x C",
        )
    y_train = _labels(path, "y_train", arrays["y_train"], len(x_train))
    y_test = _labels(path, "y_test", arrays["y_test"], len(x_test))
    top = int(max(y_train.max(initial=0), y_test.max(initial=0)))
    classes = tuple(str(i) for i in range(top + 1))
    if "classes" in arrays:
        names = arrays["classes"]
        if names.dtype.kind != "U" or names.ndim != 1:
            raise _bad(path, f"classes is {names.dtype} {names.shape}", "use a 1-D str array")
        classes = tuple(str(c) for c in names)
    if top >= len(classes):
        raise _bad(path, f"label {top} but only {len(classes)} classes", "fix labels or classes")
    return Dataset(
        name="npz",
        modality="image",
        classes=classes,
        train=Split(x_train, y_train),
        test=Split(x_test, y_test),
        source=str(path),
    )


def _scan(
    folder: Path, classes: tuple[str, ...] | None
) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The classes and ``(file, label)`` of every image under ``folder``, by (class, name)."""
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder} is not a folder", fix=f"put images in {folder}/<class>/")
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = tuple(found)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise _bad(folder, f"classes {unknown} are not in train/", "add them to train/ too")
    files: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        sub = folder / cls
        paths = sorted(
            p
            for p in (sub.iterdir() if sub.is_dir() else ())
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        )
        if not paths and folder.name == "train":
            raise _bad(sub, "class folder has no images", "add images or remove the folder")
        files.extend((p, label) for p in paths)
    if not files:
        raise _bad(folder, "no images found", f"put images in {folder}/<class>/")
    return classes, files


def _probe(path: Path) -> tuple[tuple[int, int], bool]:
    """``((H, W), is_color)`` of an image file, reading little more than its header."""
    try:
        with Image.open(path) as image:
            if image.mode in _GRAY_MODES:
                return (image.height, image.width), False
            if image.mode not in ("P", "PA"):
                return (image.height, image.width), True
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _bad(
            path, f"cannot read image ({type(exc).__name__}: {exc})", "fix or remove it"
        ) from exc
    color = bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())
    return (rgb.shape[0], rgb.shape[1]), color


def decode_folder(
    files: list[tuple[Path, int]], *, size: tuple[int, int] | None, color: bool | None
) -> np.ndarray:
    """Decodes the images of :func:`_scan` into ``uint8`` ``N x H x W x C``, one size and mode.

    Raises:
        DataFormatError: An image is unreadable, or sizes differ and ``size`` is ``None``.
    """
    probes = [_probe(p) for p, _ in files]
    if size is None:
        first = probes[0][0]
        other = next((i for i, (hw, _) in enumerate(probes) if hw != first), None)
        if other is not None:
            (h, w), (h2, w2) = first, probes[other][0]
            raise DataFormatError(
                f"images differ in size: {files[0][0]} is {h}x{w} (HxW) but "
                f"{files[other][0]} is {h2}x{w2}",
                fix="pass size=(H, W) to resize all images to one size",
            )
    use_color = any(c for _, c in probes) if color is None else bool(color)
    pixels = []
    for path, _ in files:
        image = decode_image(path.read_bytes(), str(path)).convert("RGB" if use_color else "L")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
        pixels.append(image_to_array(image, color=use_color))
    return np.stack(pixels)


def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or any(type(v) is not int or v < 1 for v in size)
    ):
        raise ConfigError(
            f"size must be (H, W) with positive integers, got {size!r}",
            fix="use e.g. size=(32, 32)",
        )
    return int(size[0]), int(size[1])


@register_dataset(
    "imagefolder",
    modality="image",
    help="your images in PATH/train/<class>/ and PATH/test/<class>/ (png, jpg, bmp, gif, webp)",
    takes_path=True,
    default_model="mlp",
)
def load_imagefolder(
    *,
    path: Path,
    use_cache: bool = True,
    size: tuple[int, int] | None = None,
    color: bool | None = None,
) -> Dataset:
    """Loads a folder tree of images, one subfolder per class.

    Args:
        path: The folder holding ``train/`` and ``test/``.
        use_cache: Read/write the decoded arrays in the cache.
        size: Resize every image to ``(H, W)``; required when the images differ in size.
        color: RGB (``True``), grayscale (``False``), or RGB if any image has colour (``None``).

    Raises:
        DataNotFoundError: ``path``, ``train/`` or ``test/`` is missing.
        DataFormatError: An empty class, an unreadable image, or mixed sizes without ``size``.
    """
    hw = _check_size(size)
    if not path.is_dir():
        raise DataNotFoundError(f"{path} is not a folder", fix="pass PATH holding train/ and test/")
    classes, train_files = _scan(path / "train", None)
    test_files = _scan(path / "test", classes)[1]
    files = train_files + test_files
    listing = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p, _ in files]
    digest = hashlib.sha256(repr(listing).encode()).hexdigest()
    key = {"path": str(path.resolve()), "files": digest, "size": hw, "color": color, "format": 1}

    def build() -> dict[str, np.ndarray]:  # one size and colour mode for both splits
        return {"x": decode_folder(files, size=hw, color=color)}

    x = cached_arrays("imagefolder", key, build, use_cache=use_cache)["x"]
    y = np.array([label for _, label in files], dtype=np.int64)
    n = len(train_files)
    return Dataset(
        name="imagefolder",
        modality="image",
        classes=classes,
        train=Split(x[:n], y[:n]),
        test=Split(x[n:], y[n:]),
        source=str(path),
    )
