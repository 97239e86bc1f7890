"""Run someone else's training code under supervision (``covertml guard``).

The paper's conclusion asks for least privilege in machine learning: a data owner who runs
a third party's training code should get a model that holds only what its task needs.
While the code runs the owner sees everything it does with the data: the guard matches
every training batch against the owner's items, audits snapshots of the weights as they
form, checks that the parameters change only through optimizer steps, and scans every model
file the code writes. See docs/GUARD.md for what it can and cannot see.

Example:
    >>> from covertml.supervise import Guard, list_watchers
    >>> list_watchers()
    ['inputs', 'optimizer-steps', 'model-files']
"""

from covertml.supervise.matcher import InputMatcher, MatchStats
from covertml.supervise.report import GuardFinding, GuardReport, build_report
from covertml.supervise.session import Guard, guard
from covertml.supervise.watch import Observations, Watcher


def list_watchers() -> list[str]:
    """What the guard watches."""
    return ["inputs", "optimizer-steps", "model-files"]


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
    "list_watchers",
]
