"""Rows marked fixed (capacity abuse's synthetic inputs) are never augmented."""

from __future__ import annotations

import numpy as np
import torch

from covertml.data.base import Split
from covertml.training import TrainConfig, Trainer
from covertml.training.batches import ArrayData


def test_concat_marks_only_the_extra_rows_fixed() -> None:
    real = ArrayData(np.zeros((3, 4, 4, 1), np.uint8), np.arange(3))
    extra = ArrayData(np.ones((2, 4, 4, 1), np.uint8), np.arange(2))
    both = real.concat(extra, other_fixed=True)
    assert both.fixed is not None and both.fixed.tolist() == [False] * 3 + [True] * 2
    xb, yb, mask = both.__getitems__([4, 0])
    assert tuple(xb.shape) == (2, 1, 4, 4) and float(xb[0].max()) == np.float32(1 / 255)
    assert mask.tolist() == [True, False] and yb.tolist() == [1, 0]
    assert len(real.concat(extra).__getitems__([0])) == 2  # no mask without fixed rows


class _Recorder(torch.nn.Module):
    """Records every input batch it sees; a linear head so training can run."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3 * 8 * 8, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.head(x.flatten(1))


def test_trainer_augments_real_rows_but_not_extra_rows() -> None:
    rng = np.random.default_rng(0)
    real = Split(rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8), np.zeros(16, np.int64))
    synthetic = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    extra = Split(synthetic, np.ones(16, np.int64))
    model = _Recorder()
    config = TrainConfig(epochs=2, batch_size=8, augment="flip-crop", seed=0)
    Trainer(config, extra_data=extra).fit(model, real)
    seen = torch.cat(model.seen).numpy()
    exact = {row.tobytes() for row in (synthetic.transpose(0, 3, 1, 2) / 255).astype(np.float32)}
    originals = {row.tobytes() for row in (real.x.transpose(0, 3, 1, 2) / 255).astype(np.float32)}
    seen_rows = [row.tobytes() for row in seen]
    assert sum(r in exact for r in seen_rows) == 32  # every synthetic row, both epochs, exact
    assert sum(r in originals for r in seen_rows) < 32  # real rows were flipped/cropped
