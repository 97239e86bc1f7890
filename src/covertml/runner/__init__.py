r"""Experiment runner: grids of (dataset x attack x sanitizer x seed) cells from TOML files.

Example:
    >>> from covertml.runner import parse_grid
    >>> len(parse_grid('[datasets.digits]\n[attacks]\nhonest = [{}]').cells())
    1
"""

from covertml.runner.config import Cell, Grid, load_grid, parse_grid
from covertml.runner.jobs import Job, plan_jobs
from covertml.runner.progress import Progress, RunSummary
from covertml.runner.run import run_grid

__all__ = [
    "Cell",
    "Grid",
    "Job",
    "Progress",
    "RunSummary",
    "load_grid",
    "parse_grid",
    "plan_jobs",
    "run_grid",
]
