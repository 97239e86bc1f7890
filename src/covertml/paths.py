"""Where covertml looks for data and keeps its cache, and safe file writing.

The data directory comes from, in order: an explicit argument (the CLI's ``--data-dir``),
the ``COVERTML_DATA`` environment variable, then ``./data``. The cache directory comes from
``COVERTML_CACHE`` or the user cache directory (``~/.cache/covertml`` on Linux).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import platformdirs

DATA_ENV = "COVERTML_DATA"
CACHE_ENV = "COVERTML_CACHE"


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Returns the directory that holds the offline dataset archives.

    Example:
        >>> data_dir("/tmp/somewhere").as_posix()
        '/tmp/somewhere'
    """
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path("data")


def cache_dir() -> Path:
    """Returns (and creates) the directory for decoded-dataset caches."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("covertml"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def current_umask() -> int:
    """The process umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[bytes]]:
    """Opens a temporary file next to ``path`` and renames it over ``path`` on success.

    A crash or exception leaves any earlier ``path`` untouched and no partial file behind.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.bin"
        >>> with atomic_write(target) as f:
        ...     _ = f.write(b"hello")
        >>> target.read_bytes()
        b'hello'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # as open() would: mkstemp makes it private
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))
