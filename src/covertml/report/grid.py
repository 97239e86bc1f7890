"""Original-vs-recovered image grids as PNG (Pillow, no plotting library needed)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from covertml.paths import atomic_write


def image_grid(
    rows: list[np.ndarray], *, columns: int = 16, scale: int = 0, gap: int = 2
) -> Image.Image:
    """Tiles several rows of ``uint8`` ``N x H x W`` images into one grayscale picture.

    Each entry of ``rows`` becomes one band of the grid (e.g. originals, then recovered),
    showing its first ``columns`` images. ``scale`` (0 = automatic) enlarges small images.

    Example:
        >>> img = image_grid([np.zeros((3, 8, 8), np.uint8), np.ones((3, 8, 8), np.uint8)])
        >>> img.mode, img.size[0] > 8
        ('L', True)
    """
    if not rows:
        raise ValueError("no images to tile")
    h, w = rows[0].shape[1:3]
    scale = scale or max(1, 48 // max(h, w))
    n = min(columns, max(r.shape[0] for r in rows))
    cell_h, cell_w = h * scale + gap, w * scale + gap
    canvas = np.full((len(rows) * cell_h + gap, n * cell_w + gap), 255, dtype=np.uint8)
    for r, images in enumerate(rows):
        for c in range(min(n, images.shape[0])):
            tile = np.kron(images[c], np.ones((scale, scale), dtype=np.uint8))
            y, x = gap + r * cell_h, gap + c * cell_w
            canvas[y : y + h * scale, x : x + w * scale] = tile
    return Image.fromarray(canvas, mode="L")


def save_grid(path: str | os.PathLike[str], rows: list[np.ndarray], *, columns: int = 16) -> Path:
    """Writes :func:`image_grid` as a PNG, atomically."""
    buf = io.BytesIO()
    image_grid(rows, columns=columns).save(buf, format="PNG")
    with atomic_write(path) as handle:
        handle.write(buf.getvalue())
    return Path(path)
