"""Where a run stands: cells done, running and left, and an ETA from measured times.

The ETA counts the trainings still to come (at the mean measured training time; a training
in flight counts half) and the cells still to evaluate (at the mean cell time), shared out
among the workers.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from covertml.runner.config import Grid
from covertml.runner.jobs import safe_path
from covertml.runner.records import write_tables


@dataclass(frozen=True)
class Progress:
    """Where a run stands (passed to the ``on_progress`` callback after every event)."""

    total: int
    done: int
    failed: int
    running: int
    left: int
    elapsed: float
    eta_seconds: float | None
    last: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run_grid` did."""

    out: str
    total: int
    done: int
    failed: int
    resumed: int
    seconds: float
    peak_rss_mb: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def peak_rss_mb() -> float:
    """Peak resident memory of this process or any finished child, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0  # Linux reports KiB


def model_ready(run_dir: Path, job_id: str) -> bool:
    """Whether job ``job_id``'s model file is in ``run_dir``."""
    return (run_dir / "models" / safe_path(job_id) / "model.safetensors").is_file()


class RunState:
    """Book-keeping of one run: what is done, running and left; ETA; tables on each cell."""

    def __init__(
        self, grid: Grid, run_dir: Path, records: dict[str, dict[str, Any]], *, jobs: int = 1
    ) -> None:
        self.cells = grid.cells()
        self.run_dir = run_dir
        self.records = records
        self.resumed = sum(r.get("status") == "ok" for r in records.values())
        self.start = time.perf_counter()
        self.finished_now = 0
        self.running: set[str] = set()
        self.failed = 0
        self.parallel = jobs
        self.to_train: set[str] = set()  # jobs that will train a model (not reuse one)
        self.training: set[str] = set()
        self.train_times: list[float] = []
        self.cell_times: list[float] = []

    def eta(self, left: int) -> float | None:
        """Seconds left: trainings still to come and cells still to evaluate, per worker."""
        if self.to_train and not self.train_times:
            return None
        if not self.to_train and not self.cell_times:
            return None
        per_train = sum(self.train_times) / len(self.train_times) if self.train_times else 0.0
        per_cell = sum(self.cell_times) / len(self.cell_times) if self.cell_times else 0.0
        trainings = len(self.to_train) - 0.5 * len(self.training & self.to_train)
        return (trainings * per_train + left * per_cell) / self.parallel

    def progress(self, last: str = "") -> Progress:
        """The current :class:`Progress` (``last``: what just happened)."""
        done = sum(r.get("status") == "ok" for r in self.records.values())
        left = len(self.cells) - done - self.failed
        elapsed = time.perf_counter() - self.start
        return Progress(
            len(self.cells),
            done,
            self.failed,
            len(self.running),
            left,
            elapsed,
            self.eta(left),
            last,
        )

    def on_event(self, event: dict[str, Any]) -> str:
        """Books a worker's event (a finished cell brings its record); describes it."""
        kind = event["event"]
        if kind == "job-start":
            self.running.update(event["cells"])
            self.training.add(event["job"])
            return f"started {event['job']}"
        if kind == "job-model":
            self.training.discard(event["job"])
            self.to_train.discard(event["job"])
            if event["trained"]:
                self.train_times.append(float(event["seconds"]))
            return f"model ready: {event['job']}"
        if kind == "cell":
            cell_id = event["cell"]
            self.running.discard(cell_id)
            self.finished_now += 1
            self.records[cell_id] = event["record"]  # as the worker just wrote it
            if event["status"] != "ok":
                self.failed += 1
            if event.get("seconds") is not None:
                self.cell_times.append(float(event["seconds"]))
            write_tables(self.run_dir, self.cells, self.records)
            return f"{event['status']}: {cell_id}"
        return f"finished {event['job']}"
