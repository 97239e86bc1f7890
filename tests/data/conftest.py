"""Data-test fixtures: an isolated cache and builders of tiny archives in the real layouts."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_cache(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fast tests never touch the user cache; real-archive tests (marker ``data``) use it."""
    if request.node.get_closest_marker("data") is None:
        monkeypatch.setenv("COVERTML_CACHE", str(tmp_path_factory.mktemp("cache")))


def jpeg_bytes(color: tuple[int, int, int], size: tuple[int, int], quality: int = 95) -> bytes:
    """A solid-colour JPEG of ``size`` = (W, H)."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_tar(path: Path, files: dict[str, bytes], *, dirs: bool = True) -> Path:
    """Writes ``files`` (name -> bytes) into a gzipped tar; with ``dirs`` also directory entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        if dirs:
            seen: set[str] = set()
            for name in files:
                parts = name.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(parts[:i])
                    if d not in seen:
                        seen.add(d)
                        info = tarfile.TarInfo(d)
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def tar_writer() -> Callable[..., Path]:
    return write_tar


@pytest.fixture
def jpeg() -> Callable[..., bytes]:
    return jpeg_bytes


@pytest.fixture
def real_data() -> Path:
    """The offline data folder from COVERTML_DATA (tests are skipped without it)."""
    env = os.environ.get("COVERTML_DATA")
    if not env or not Path(env).is_dir():
        pytest.skip("set COVERTML_DATA to the folder with the offline archives")
    return Path(env)
