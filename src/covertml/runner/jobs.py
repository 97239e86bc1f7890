r"""Grouping a grid's cells into training jobs, and where each job's files go.

Cells that differ only in the sanitizer share one trained model, so the runner trains each
(dataset, attack setting, seed) once -- a :class:`Job` -- and evaluates every sanitizer on
it. A job may start from another's model: attacks that train honestly and write their
secret afterwards (LSB) reuse the honest model of the same seed, and a grid with
``scan = true`` scans against an honest *reference* model trained with another seed.

Example:
    >>> from covertml.runner.config import parse_grid
    >>> grid = parse_grid('[datasets.digits]\n[attacks]\nlsb = [{bits = 8}]')
    >>> [(j.id, j.base) for j in plan_jobs(grid)]
    [('digits/honest/seed0', None), ('digits/lsb-bits=8/seed0', 'digits/honest/seed0')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from covertml.runner.config import Cell, Grid, _label

#: Seed offset of the honest reference model a scanning grid trains per dataset and seed.
REFERENCE_SEED_OFFSET = 1000


def safe_path(cell_or_job_id: str) -> Path:
    """A relative folder for an id (characters outside ``[A-Za-z0-9._=-]`` become ``_``)."""
    return Path(*(re.sub(r"[^A-Za-z0-9._=+-]", "_", part) for part in cell_or_job_id.split("/")))


@dataclass(frozen=True)
class Job:
    """One model to train (or reuse) and the cells evaluated on it.

    Attributes:
        dataset: Dataset name.
        train: Training overrides of the dataset's recipe.
        attack: Attack name (``honest`` for none, ``reference`` for the scan reference).
        attack_options: The attack's options.
        seed: Training seed.
        cells: The cells to evaluate on this job's model.
        base: Id of a job whose model this one starts from (LSB on the honest model).
        reference: Id of the reference job to scan against (grids with ``scan = true``).
    """

    dataset: str
    train: dict[str, Any]
    attack: str
    attack_options: dict[str, Any]
    seed: int
    cells: tuple[Cell, ...] = ()
    base: str | None = None
    reference: str | None = None

    @property
    def id(self) -> str:
        """Stable identifier, also the model's folder under ``models/``."""
        return f"{self.dataset}/{_label(self.attack, self.attack_options)}/seed{self.seed}"

    @property
    def train_seed(self) -> int:
        """Seed the model is trained with (the reference's is offset)."""
        return self.seed + (REFERENCE_SEED_OFFSET if self.attack == "reference" else 0)

    def depends_on(self) -> tuple[str, ...]:
        """Jobs whose models this job would like finished first."""
        return tuple(d for d in (self.base, self.reference) if d is not None)


def plan_jobs(grid: Grid) -> list[Job]:
    """The grid's jobs in the order they should start (references and honest models first)."""
    from covertml.attacks.base import ATTACKS

    groups: dict[tuple[str, str, int], list[Cell]] = {}
    for cell in grid.cells():
        key = (cell.dataset, _label(cell.attack, cell.attack_options), cell.seed)
        groups.setdefault(key, []).append(cell)
    jobs: list[Job] = []
    for (ds, _, seed), cells in groups.items():
        first = cells[0]
        honest_id = f"{ds}/honest/seed{seed}"
        reference_id = f"{ds}/reference/seed{seed}" if grid.scan else None
        if grid.scan and not any(j.id == reference_id for j in jobs):
            jobs.append(Job(ds, first.train, "reference", {}, seed))
        base = None
        if (
            first.attack not in ("honest",)
            and ATTACKS.get(first.attack).meta["cls"].trains_honestly
        ):
            base = honest_id
        jobs.append(
            Job(
                ds,
                first.train,
                first.attack,
                first.attack_options,
                seed,
                tuple(cells),
                base=base,
                reference=reference_id,
            )
        )
    return jobs
