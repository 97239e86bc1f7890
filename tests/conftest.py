from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _small_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A private dataset cache so tests never touch the user's cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("COVERTML_CACHE", str(path))
    return path
