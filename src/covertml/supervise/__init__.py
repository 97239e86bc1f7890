"""Run someone else's training code under supervision (``covertml guard``).

The paper's conclusion asks for least privilege in machine learning: a data owner who runs
a third party's training code should get a model that holds only what its task needs.
While the code runs the owner sees everything it does with the data: the guard matches
every training batch against the owner's items, audits snapshots of the weights as they
form, checks that the parameters change only through optimizer steps, and scans every model
file the code writes. See docs/GUARD.md for what it can and cannot see.

Example:
    >>> from covertml.data import create_dataset
    >>> from covertml.supervise import InputMatcher
    >>> stats = InputMatcher(create_dataset("digits"), null_size=300).stats
    >>> stats.noise_pass, 0.5 < stats.threshold < 1.0   # no uniform noise passes as a digit
    (0.0, True)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from covertml.supervise.matcher import InputMatcher, MatchStats
    from covertml.supervise.report import GuardFinding, GuardReport, build_report
    from covertml.supervise.session import Guard, guard
    from covertml.supervise.watch import Observations, Watcher

# names resolved on first use: the guarded child imports the watchers without the audits
_WHERE = {
    "Guard": "session",
    "guard": "session",
    "GuardFinding": "report",
    "GuardReport": "report",
    "build_report": "report",
    "InputMatcher": "matcher",
    "MatchStats": "matcher",
    "Observations": "watch",
    "Watcher": "watch",
}

__all__ = [
    "Guard",
    "GuardFinding",
    "GuardReport",
    "InputMatcher",
    "MatchStats",
    "Observations",
    "Watcher",
    "build_report",
    "guard",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
