"""Where a white-box secret lies in the carrier stream: the layout recorded in the key.

The carrier stream is every carrier tensor flattened row-major and concatenated, in the
carrier map's order. A layout names two segments of it, the keyed pilot block and the
secret, each starting at the beginning of a tensor or right after the other segment, so
that what the loss term touches is a prefix of each tensor it uses.

- ``flat`` (the paper's): the pilot, then the secret, from the first carrier on, over as
  many tensors as it needs.
- ``rows``: for an image secret whose item has as many values as the first carrier tensor
  has columns -- a first dense layer whose rows are image-shaped -- one item per row of
  that tensor and the pilot at the start of the next tensor. Nothing else is touched:
  the later layers keep their whole capacity for the task, and a first layer's rows are
  where an honest model already keeps image-like templates, so the same correlation
  costs far less accuracy (docs/ATTACK_STRENGTH.md). Fewer items fit: one per row.
- ``tail``: the secret in the last tensors (from the start of the latest tensor from
  which on it fits, the classifier last), the pilot at the start of the tensor before.
  The last, widest layers of a deep network are its most redundant (they are the ones
  pruning removes first), while its first convolutions are few and every later layer
  depends on them.
- ``auto`` picks ``rows`` where it applies, else ``tail``.

A layout depends on the architecture and the secret's size only, never on the data: the
key must not become a second channel for what the model is meant to carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from covertml.attacks.carriers import CarrierMap
from covertml.errors import ConfigError

LAYOUTS = ("auto", "flat", "rows", "tail")


@dataclass(frozen=True)
class Layout:
    """The pilot and secret segments of a carrier stream: ``(offset, length)`` each.

    Example:
        >>> cmap = CarrierMap(("a", "b"), ((4, 8), (3, 5)))
        >>> lay = Layout("rows", pilot=(32, 6), secret=(0, 24))
        >>> lay.counts(cmap)
        (24, 6)
        >>> lay.stream(np.arange(6), np.arange(100, 124))[:2].astype(int).tolist()
        [100, 101]
    """

    name: str
    pilot: tuple[int, int]
    secret: tuple[int, int]

    def counts(self, cmap: CarrierMap) -> tuple[int, ...]:
        """Values used at the start of each carrier tensor (0: tensor not used)."""
        starts = np.cumsum([0] + [math.prod(s) for s in cmap.shapes])
        counts = [0] * len(cmap.shapes)
        for offset, length in (self.pilot, self.secret):
            if length == 0:
                continue
            end = offset + length
            for i in range(len(cmap.shapes)):
                lo, hi = int(starts[i]), int(starts[i + 1])
                if end <= lo or offset >= hi:
                    continue
                counts[i] = max(counts[i], min(end, hi) - lo)
        if sum(counts) != self.pilot[1] + self.secret[1] or self.secret[0] + self.secret[1] > int(
            starts[-1]
        ):
            raise ConfigError(
                f"layout {self.name!r} does not fit the carriers of this model",
                fix="use the key written for this model's architecture",
            )
        return tuple(counts)

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the pilot and the secret lie within the used stream (prefixes in order)."""
        pilot = np.arange(self.pilot[1])
        secret = np.arange(self.secret[1])
        if self.pilot[0] <= self.secret[0]:
            return pilot, secret + self.pilot[1]
        return pilot + self.secret[1], secret

    def stream(self, pilot_values: np.ndarray, secret_values: np.ndarray) -> np.ndarray:
        """The training target over the used stream: pilot and secret in their places."""
        out = np.zeros(self.pilot[1] + self.secret[1], dtype=np.float64)
        at_pilot, at_secret = self.positions()
        out[at_pilot] = pilot_values
        out[at_secret] = secret_values
        return out

    def split(self, carriers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pilot and secret carriers out of the whole carrier stream."""
        (po, pn), (so, sn) = self.pilot, self.secret
        return carriers[po : po + pn], carriers[so : so + sn]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in the key's settings)."""
        return {"name": self.name, "pilot": list(self.pilot), "secret": list(self.secret)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, pilot: int, secret: int) -> Layout:
        """Inverse of :meth:`to_dict`; a key written before layouts existed is ``flat``."""
        if not isinstance(data, dict):
            return cls("flat", (0, pilot), (pilot, secret))
        try:
            (po, pn), (so, sn) = data["pilot"], data["secret"]
            return cls(str(data["name"]), (int(po), int(pn)), (int(so), int(sn)))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"the key's layout {data!r} is malformed",
                fix="use the key.json that training wrote, unedited",
            ) from None


def rows_apply(cmap: CarrierMap, item_size: int, pilot: int) -> bool:
    """Whether the ``rows`` layout applies: image-shaped rows and room for the pilot after."""
    first = cmap.shapes[0]
    if len(first) != 2 or first[1] != item_size:
        return False
    rest = sum(math.prod(s) for s in cmap.shapes[1:])
    return pilot == 0 or rest >= pilot


def choose_layout(
    cmap: CarrierMap, *, kind: str, item_size: int, pilot: int, layout: str = "auto"
) -> tuple[str, int]:
    """The layout to use and how many secret values it has room for.

    Example:
        >>> choose_layout(CarrierMap(("a", "b"), ((4, 8), (3, 5))), kind="image",
        ...               item_size=8, pilot=6)
        ('rows', 32)
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}", fix=f"choose one of: {', '.join(LAYOUTS)}")
    fits = kind == "image" and rows_apply(cmap, item_size, pilot)
    if layout == "rows" and not fits:
        raise ConfigError(
            "layout 'rows' needs an image secret whose item has as many values as the first "
            f"carrier tensor {cmap.names[0]!r} {cmap.shapes[0]} has columns",
            fix="use layout=flat (or auto) for this model",
        )
    if layout == "rows" or (layout == "auto" and fits):
        return "rows", math.prod(cmap.shapes[0])
    return ("flat" if layout == "flat" else "tail"), cmap.size - pilot


def make_layout(name: str, cmap: CarrierMap, *, pilot: int, secret: int) -> Layout:
    """The segments of layout ``name`` for ``pilot`` and ``secret`` values.

    Example:
        >>> cmap = CarrierMap(("a", "b", "c"), ((4, 8), (6, 8), (2, 8)))
        >>> make_layout("tail", cmap, pilot=16, secret=40).to_dict()
        {'name': 'tail', 'pilot': [0, 16], 'secret': [32, 40]}
    """
    if name == "rows":
        return Layout("rows", (math.prod(cmap.shapes[0]), pilot), (0, secret))
    if name == "tail":
        sizes = [math.prod(s) for s in cmap.shapes]
        starts = np.cumsum([0, *sizes])
        for i in range(len(sizes) - 1, 0, -1):  # the latest tensor the secret can start at
            if int(starts[-1] - starts[i]) >= secret and sizes[i - 1] >= pilot:
                return Layout("tail", (int(starts[i - 1]), pilot), (int(starts[i]), secret))
    return Layout("flat", (0, pilot), (pilot, secret))


def column_positions(shape: tuple[int, ...], n: int) -> np.ndarray:
    """The first ``n`` flat positions of a 2-D tensor taken column by column.

    Sign encoding's ``columns`` layout for a linear model's ``classes x features`` weights:
    a feature's weights for every class before the next feature's, so the secret spreads
    over all classes instead of taking whole classes' rows.

    Example:
        >>> column_positions((2, 4), 5).tolist()
        [0, 4, 1, 5, 2]
    """
    rows, cols = int(shape[0]), int(math.prod(shape[1:]))
    k = -(-n // rows)
    if k > cols:
        raise ValueError(f"{n} positions do not fit a {rows}x{cols} tensor")
    grid = np.arange(k, dtype=np.int64)[:, None] + cols * np.arange(rows, dtype=np.int64)[None, :]
    return grid.reshape(-1)[:n]
