"""Shared helpers of the archive loaders: one-pass tar streaming and image decoding.

The offline archives are read in place, in a single streaming pass (``tarfile`` mode
``"r|gz"``), never extracted to disk. Any sign of a damaged archive (a bad gzip stream, a
truncated tar, an I/O error) becomes a :class:`~covertml.errors.DataFormatError` that names
the file and tells the user to copy it again.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from covertml.errors import DataFormatError, DataNotFoundError

#: Errors that mean "this archive is damaged or truncated".
CORRUPT_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    OSError,
)


def corrupt_archive_error(path: Path, exc: BaseException) -> DataFormatError:
    """The error raised for an archive that cannot be read to its end.

    Example:
        >>> str(corrupt_archive_error(Path("a.tar.gz"), EOFError("truncated")))[:37]
        'cannot read archive a.tar.gz (EOFErro'
    """
    return DataFormatError(
        f"cannot read archive {path} ({type(exc).__name__}: {exc})",
        fix="the file looks damaged or truncated; copy it again from the original data folder",
    )


def iter_tar_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yields ``(member name, contents)`` of every regular file of a tar(.gz), in one pass.

    Args:
        path: The archive (``.tar`` or ``.tar.gz``; compression is detected).

    Yields:
        The member's name inside the archive (``/``-separated, no leading ``./``) and its bytes.

    Raises:
        DataFormatError: The archive is damaged, truncated or not a tar archive.
    """
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - regular files always have data
                    continue
                name = member.name.removeprefix("./")
                yield name, handle.read()
    except CORRUPT_ERRORS as exc:
        raise corrupt_archive_error(path, exc) from exc


def decode_image(data: bytes, name: str) -> Image.Image:
    """Decodes an encoded image (JPEG, PNG, ...) fully into memory.

    Args:
        data: The encoded file contents.
        name: Where it came from, for the error message.

    Raises:
        DataFormatError: The bytes are not a readable image.
    """
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataFormatError(
            f"cannot decode image {name} ({type(exc).__name__}: {exc})",
            fix="replace or remove the damaged file (or copy the archive again)",
        ) from exc
    return image


def image_to_array(image: Image.Image, *, color: bool) -> np.ndarray:
    """``uint8`` ``H x W x C`` pixels: RGB (C = 3) or ITU-R BT.601 luma (C = 1).

    Example:
        >>> image_to_array(Image.new("RGB", (3, 2), (255, 0, 0)), color=False).ravel().tolist()
        [76, 76, 76, 76, 76, 76]
    """
    if color:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]


def require_file(path: Path, rel: str, dataset: str) -> Path:
    """Returns ``path`` or raises a :class:`DataNotFoundError` naming ``rel`` and the fix."""
    if not path.is_file():
        raise DataNotFoundError(
            f"dataset {dataset!r} needs {rel!r} but {path} does not exist",
            fix=f"point --data-dir or COVERTML_DATA at the folder that contains {rel!r}",
        )
    return path
