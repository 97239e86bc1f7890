"""A rich progress bar over all training steps, or nothing when disabled."""

from __future__ import annotations

from typing import Any, Protocol


class EpochStatsLike(Protocol):
    """The fields of an epoch record the bar shows."""

    @property
    def epoch(self) -> int: ...  # noqa: D102
    @property
    def train_loss(self) -> float: ...  # noqa: D102
    @property
    def test_accuracy(self) -> float | None: ...  # noqa: D102


class ProgressBar:
    """A rich progress bar, or nothing when disabled."""

    def __init__(self, enabled: bool, epochs: int, steps: int) -> None:
        self.enabled = enabled
        self.epochs = epochs
        self.steps = steps
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train[/] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                f"epoch 1/{self.epochs}", total=self.epochs * self.steps, status=""
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def advance(self) -> None:
        """Marks one more training step done."""
        if self._progress is not None:
            self._progress.advance(self._task)

    def epoch_done(self, stats: EpochStatsLike) -> None:
        """Shows the finished epoch's loss and accuracy."""
        if self._progress is not None:
            acc = "" if stats.test_accuracy is None else f"test acc {stats.test_accuracy:.3f}"
            self._progress.update(
                self._task,
                description=f"epoch {min(stats.epoch + 1, self.epochs)}/{self.epochs}",
                status=f"loss {stats.train_loss:.3f} {acc}",
            )
