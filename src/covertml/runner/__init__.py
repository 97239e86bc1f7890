r"""Experiment runner: grids of (dataset x attack x sanitizer x seed) cells from TOML files.

Example:
    >>> from covertml.runner import parse_grid
    >>> len(parse_grid('[datasets.digits]\n[attacks]\nhonest = [{}]').cells())
    1
"""

from covertml.runner.config import Cell, Grid, load_grid, parse_grid

__all__ = ["Cell", "Grid", "load_grid", "parse_grid"]
