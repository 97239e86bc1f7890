"""covertml: models that remember too much -- attacks, countermeasures and audits.

Reproduces the white-box (LSB, correlated value, sign) and black-box (capacity abuse)
attacks of Song, Ristenpart and Shmatikov (CCS 2017) and the defences against them.
"""

__version__ = "0.1.0"

from typing import Any


def __getattr__(name: str) -> Any:
    """``covertml.guard`` (imported on first use, so ``import covertml`` stays light)."""
    if name == "guard":
        from covertml.supervise import guard

        return guard
    raise AttributeError(f"module 'covertml' has no attribute {name!r}")
