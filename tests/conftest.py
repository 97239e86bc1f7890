from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from covertml.cli.main import main


@pytest.fixture(autouse=True)
def _small_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A private dataset cache so tests never touch the user's cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("COVERTML_CACHE", str(path))
    return path


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """Runs ``covertml ARGV`` in-process; returns (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run
