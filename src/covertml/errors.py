"""User-facing errors.

Every error that bad input can cause derives from :class:`CovertMLError`. Its message is
one line that names the problem and, after ``--``, how to fix it. The CLI prints that line
and exits with status 2; library callers can catch the class.
"""

from __future__ import annotations


class CovertMLError(Exception):
    """Base class of errors caused by bad input or configuration.

    Args:
        problem: What went wrong, in one sentence.
        fix: How the user can fix it (optional).

    Example:
        >>> str(CovertMLError("file is empty", fix="pass a model file"))
        'file is empty -- pass a model file'
    """

    def __init__(self, problem: str, *, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem} -- {fix}")


class UnknownNameError(CovertMLError, KeyError):
    """A registry lookup used a name that is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0] if self.args else ""


class DataNotFoundError(CovertMLError, FileNotFoundError):
    """A dataset archive or directory is missing."""


class DataFormatError(CovertMLError, ValueError):
    """A dataset file exists but does not have the expected layout."""


class ModelFileError(CovertMLError, ValueError):
    """A model file is missing, corrupt, truncated, unsafe or inconsistent."""


class ConfigError(CovertMLError, ValueError):
    """Options that contradict each other or are out of range."""
