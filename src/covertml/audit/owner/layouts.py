"""How an attacker may lay the owner's images out as numbers: the representations tried.

Malicious training code chooses how an image becomes a run of numbers: grey (any luma
formula), one colour channel, RGB interleaved (``HWC``) or planar (``CHW``), on a 0-255 or
[0, 1] scale or standardized. A per-item Pearson correlation is blind to one affine map per
item, so the scale (0-255, [0, 1]) and a global standardization need no representation of
their own; per-channel and per-pixel standardization do, since they are not one affine map
of the item. Representations that are nearly the same for this data (for example
channel-standardized and raw RGB when the channels have similar statistics, or the luma
formulas among themselves) are merged, so that each one tested is worth its hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]

LUMA = np.array([0.299, 0.587, 0.114])  # BT.601; BT.709 and plain means correlate > 0.99


@dataclass(frozen=True, eq=False)
class Layout:
    """One way of turning ``uint8`` ``N x H x W x C`` images into ``N x P`` numbers.

    Attributes:
        name: What a person reads in the evidence, e.g. ``"RGB HWC"``.
        size: ``P``, numbers per item.
        transform: ``uint8`` images to ``float32`` rows.
        byte_valued: Whether the numbers are the 0-255 bytes themselves (what sign
            encoding can spell); standardized layouts are not.
    """

    name: str
    size: int
    transform: Transform
    byte_valued: bool = True

    def rows(self, images: np.ndarray) -> np.ndarray:
        """``images`` in this layout, ``float32`` ``N x P``."""
        out: np.ndarray = self.transform(images).reshape(images.shape[0], -1)
        return out.astype(np.float32, copy=False)


def _standardizer(
    stats_images: np.ndarray, *, axes: tuple[int, ...], layout: Transform
) -> Transform:
    x = stats_images.astype(np.float32)
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    std[std == 0] = 1.0

    def transform(images: np.ndarray) -> np.ndarray:
        return layout((images.astype(np.float32) - mean) / std)

    return transform


def _hwc(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32, copy=False)


def _chw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def _channel(i: int) -> Transform:
    def transform(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = x[..., i].astype(np.float32)
        return out

    return transform


def _grey(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) @ LUMA.astype(np.float32)


def candidate_layouts(stats_images: np.ndarray) -> list[Layout]:
    """Every representation tried for images shaped like ``stats_images`` (N x H x W x C).

    ``stats_images`` (the owner's training images, or a sample of them) give the means and
    standard deviations of the standardized layouts.

    Example:
        >>> imgs = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
        >>> [(t.name, t.size) for t in candidate_layouts(imgs)][:3]
        [('grey', 16), ('red', 16), ('green', 16)]
    """
    _, h, w, c = stats_images.shape
    hw = h * w
    out: list[Layout] = []
    if c == 1:
        out.append(Layout("grey", hw, lambda x: x[..., 0].astype(np.float32)))
    else:
        out.append(Layout("grey", hw, _grey))
        for i, colour in enumerate(("red", "green", "blue")[:c]):
            out.append(Layout(colour, hw, _channel(i)))
        out.append(Layout("RGB HWC", c * hw, _hwc))
        out.append(Layout("RGB CHW", c * hw, _chw))
        for name, layout in (("RGB HWC", _hwc), ("RGB CHW", _chw)):
            out.append(
                Layout(
                    f"{name} channel-standardized",
                    c * hw,
                    _standardizer(stats_images, axes=(0, 1, 2), layout=layout),
                    byte_valued=False,
                )
            )
    base = [t for t in out if t.byte_valued]
    for t in list(base):
        if t.name in ("red", "green", "blue"):
            continue
        out.append(
            Layout(
                f"{t.name} pixel-standardized",
                t.size,
                _pixel_standardizer(stats_images, t),
                byte_valued=False,
            )
        )
    return out


def _pixel_standardizer(stats_images: np.ndarray, layout: Layout) -> Transform:
    rows = layout.rows(stats_images)
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    std[std == 0] = 1.0

    def transform(images: np.ndarray) -> np.ndarray:
        out: np.ndarray = (layout.rows(images) - mean) / std
        return out

    return transform


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows minus their mean, over their norm (all-zero rows stay zero).

    Example:
        >>> unit_rows(np.array([[1.0, 3.0], [2.0, 2.0]])).tolist()
        [[-0.7071067811865475, 0.7071067811865475], [0.0, 0.0]]
    """
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return out


def distinct_layouts(
    layouts: list[Layout], sample: np.ndarray, *, same: float = 0.98
) -> list[tuple[Layout, list[str]]]:
    """``layouts`` with near-duplicates merged into the first of their kind.

    Two layouts of equal size are the same for this data when an item's two rows correlate
    above ``same`` on average over ``sample`` images. Returns each kept layout with the names
    of those merged into it.

    Example:
        >>> imgs = np.random.default_rng(0).integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
        >>> [(t.name, merged) for t, merged in distinct_layouts(candidate_layouts(imgs), imgs)]
        [('grey', []), ('grey pixel-standardized', [])]
    """
    kept: list[tuple[Layout, np.ndarray, list[str]]] = []
    for t in layouts:
        rows = unit_rows(t.rows(sample).astype(np.float64))
        for k_layout, k_rows, merged in kept:
            if k_layout.size == t.size and float((rows * k_rows).sum(1).mean()) > same:
                merged.append(t.name)
                break
        else:
            kept.append((t, rows, []))
    return [(t, merged) for t, _, merged in kept]
