"""The guard's defaults, in a module that imports nothing (the CLI reads them at start-up)."""

DEFAULT_BUDGET = 0.05  # share of the run's wall time the input checks may take
GUARD_ALPHA = 1e-3  # family-wise false-positive rate of the guard's verdict
