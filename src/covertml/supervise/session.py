"""``with covertml.guard(dataset=ds) as g:`` -- the guard in the current process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from covertml.audit.base import DEFAULT_ALPHA
from covertml.data.base import Dataset
from covertml.errors import ConfigError
from covertml.supervise.defaults import DEFAULT_BUDGET
from covertml.supervise.matcher import InputMatcher
from covertml.supervise.report import GuardReport, build_report, model_files
from covertml.supervise.watch import Observations, Watcher


class Guard:
    """Watches the training code run inside the ``with`` block; ``report`` after it.

    Args:
        dataset: The owner's data (what inputs are matched against and audits look for).
        alpha: Family-wise false-positive rate of the statistical findings.
        sanitize: A sanitizer name: a sanitized copy is written beside each model file.
        watch: Folders where model files written during the block are looked for (besides
            the paths given to ``torch.save`` and safetensors).
        budget: Share of the wall time the input checks may take.
        match: Match inputs against the owner's data.
        seed: Seed of the guard's random choices.

    Example:
        >>> import torch
        >>> from covertml.data import create_dataset
        >>> ds = create_dataset("digits", train_limit=200, test_limit=50)
        >>> with Guard(ds, alpha=0.01) as g:
        ...     model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        ...     opt = torch.optim.SGD(model.parameters(), lr=0.1)
        ...     x = torch.tensor(ds.train.x[:64], dtype=torch.float32).permute(0, 3, 1, 2)
        ...     loss = torch.nn.functional.cross_entropy(model(x), torch.tensor(ds.train.y[:64]))
        ...     loss.backward(); opt.step()
        >>> g.report.verdict, g.report.observed["inputs_checked"]
        ('no findings', 64)
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        alpha: float = DEFAULT_ALPHA,
        sanitize: str | None = None,
        watch: Sequence[str | Path] = (),
        budget: float = DEFAULT_BUDGET,
        match: bool = True,
        seed: int = 0,
    ) -> None:
        if not 0 < alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {alpha}", fix="e.g. alpha=1e-3")
        self.dataset = dataset
        self.alpha = alpha
        self.sanitize = sanitize
        self.watch = [Path(p) for p in watch]
        self.seed = seed
        self.matcher = InputMatcher(dataset, seed=seed) if match else None
        self.watcher = Watcher(self.matcher, budget=budget)
        self._report: GuardReport | None = None
        self._since = 0.0

    def __enter__(self) -> Guard:
        self._since = time.time()
        self.watcher.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seen = self.watcher.uninstall()
        self._report = build_report(
            seen,
            matcher=self.matcher.stats if self.matcher else None,
            dataset=self.dataset,
            alpha=self.alpha,
            files=model_files(seen.saved, self.watch, self._since),
            sanitize=self.sanitize,
            seed=self.seed,
        )

    @property
    def observations(self) -> Observations:
        """What the watchers saw so far."""
        return self.watcher.seen

    @property
    def report(self) -> GuardReport:
        """The verdict (after the ``with`` block)."""
        if self._report is None:
            raise ConfigError(
                "the guard's report exists after its with block",
                fix="read g.report after the block ends",
            )
        return self._report


guard = Guard  # ``covertml.guard(dataset=ds)``: the class is the context manager
