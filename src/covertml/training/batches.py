"""Turning dataset arrays into model-ready batches, for dense images and sparse text.

:class:`ArrayData` is a map-style torch dataset with a batched ``__getitems__`` so a
:class:`torch.utils.data.DataLoader` fetches a whole batch with one fancy-index: images stay
``uint8`` in memory and become ``float32`` in [0, 1] per batch; text rows become a sparse COO
tensor per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from covertml.data.base import Split, images_to_float

Batch = tuple[torch.Tensor, ...]  # (inputs, labels) or (inputs, labels, fixed-row mask)


def to_model_input(x: np.ndarray | sp.spmatrix) -> torch.Tensor:
    """Converts dataset rows to a model input tensor.

    ``uint8`` images ``N x H x W x C`` become ``float32`` ``N x C x H x W`` in [0, 1];
    float arrays are taken as already model-ready; sparse matrices become sparse COO tensors.

    Example:
        >>> to_model_input(np.zeros((2, 8, 8, 1), np.uint8)).shape
        torch.Size([2, 1, 8, 8])
    """
    if sp.issparse(x):
        coo = sp.coo_matrix(x)
        indices = np.vstack([coo.row, coo.col]).astype(np.int64)
        return torch.sparse_coo_tensor(
            torch.from_numpy(indices),
            torch.from_numpy(coo.data.astype(np.float32)),
            size=coo.shape,
            check_invariants=False,
        ).coalesce()
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        return torch.from_numpy(images_to_float(arr))
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


class ArrayData(TorchDataset[Batch]):
    """Rows of ``x`` (uint8 images, float arrays or a CSR matrix) with labels ``y``.

    Example:
        >>> data = ArrayData(np.zeros((4, 8, 8, 1), np.uint8), np.arange(4))
        >>> xb, yb = data.__getitems__([0, 2])
        >>> xb.shape, yb.tolist()
        (torch.Size([2, 1, 8, 8]), [0, 2])
    """

    def __init__(
        self, x: np.ndarray | sp.spmatrix, y: np.ndarray, *, fixed: np.ndarray | None = None
    ) -> None:
        if x.shape[0] != len(y):
            raise ValueError(f"x has {x.shape[0]} rows but y has {len(y)}")
        self.x = sp.csr_matrix(x) if sp.issparse(x) else np.asarray(x)
        self.y = np.asarray(y, dtype=np.int64)
        #: Rows never augmented (e.g. capacity abuse's synthetic inputs); batches then carry
        #: a third element, the batch's boolean mask of such rows.
        self.fixed = None if fixed is None else np.asarray(fixed, dtype=bool)

    @classmethod
    def from_split(cls, split: Split) -> ArrayData:
        """Wraps a dataset split."""
        return cls(split.x, split.y)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """Fetches a whole batch at once."""
        idx = np.asarray(indices, dtype=np.int64)
        if self.fixed is not None:
            mask = torch.from_numpy(self.fixed[idx])
            return to_model_input(self.x[idx]), torch.from_numpy(self.y[idx]), mask
        return to_model_input(self.x[idx]), torch.from_numpy(self.y[idx])

    def concat(self, other: ArrayData, *, other_fixed: bool = False) -> ArrayData:
        """Rows of ``self`` followed by rows of ``other`` (same kind of ``x``).

        With ``other_fixed``, ``other``'s rows are never augmented.
        """
        if sp.issparse(self.x) != sp.issparse(other.x):
            raise ValueError("cannot mix sparse and dense rows")
        if sp.issparse(self.x):
            x: Any = sp.vstack([self.x, other.x], format="csr")
        else:
            if self.x.shape[1:] != other.x.shape[1:] or self.x.dtype != other.x.dtype:
                raise ValueError(
                    f"extra rows have shape {other.x.shape[1:]} {other.x.dtype}, "
                    f"expected {self.x.shape[1:]} {self.x.dtype}"
                )
            x = np.concatenate([self.x, other.x])
        fixed = None
        if other_fixed or self.fixed is not None or other.fixed is not None:
            own = self.fixed if self.fixed is not None else np.zeros(len(self), bool)
            theirs = np.ones(len(other), bool) if other_fixed else other.fixed
            if theirs is None:
                theirs = np.zeros(len(other), bool)
            fixed = np.concatenate([own, theirs])
        return ArrayData(x, np.concatenate([self.y, other.y]), fixed=fixed)


def _identity(batch: Any) -> Any:
    return batch


def make_loader(
    data: TorchDataset[Any],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
) -> DataLoader[Any]:
    """A single-process loader; batched fetching when ``data`` is an :class:`ArrayData`."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=_identity if isinstance(data, ArrayData) else None,
        num_workers=0,
    )


def flip_and_crop(x: torch.Tensor, *, pad: int = 4, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and ``pad``-pixel pad + random crop, vectorized per batch.

    The paper's CIFAR-10 augmentation. Padding is with zeros.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> flip_and_crop(torch.rand(4, 3, 32, 32), generator=g).shape
        torch.Size([4, 3, 32, 32])
    """
    n, _, h, w = x.shape
    dev = x.device  # the draws come from the (CPU) generator: the same on every device
    flip = (torch.rand(n, generator=generator) < 0.5).to(dev, non_blocking=True)
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev, non_blocking=True)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev, non_blocking=True)
    rows = (dy.view(n, 1) + torch.arange(h, device=dev).view(1, h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=dev).view(1, w)).view(n, 1, 1, w)
    batch = torch.arange(n, device=dev).view(n, 1, 1, 1)
    chan = torch.arange(x.shape[1], device=dev).view(1, -1, 1, 1)
    return padded[batch, chan, rows, cols]


class DeviceBatches:
    """The batches of a shuffling :func:`make_loader`, from copies of the data on a device.

    The whole training set is moved to ``device`` once (images stay ``uint8`` there); each
    epoch's order comes from the loader's own sampler, so the batches are exactly the
    loader's, and only one index tensor per epoch crosses to the device.

    Example:
        >>> data = ArrayData(np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2, 1), np.arange(6))
        >>> loader = make_loader(data, batch_size=4, shuffle=True, seed=0)
        >>> on_device = DeviceBatches(data, make_loader(data, batch_size=4, shuffle=True, seed=0))
        >>> all(torch.equal(a[0], b[0]) for a, b in zip(loader, on_device)), len(on_device)
        (True, 2)
    """

    def __init__(
        self,
        data: ArrayData,
        loader: DataLoader[Any],
        *,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        if sp.issparse(data.x):
            raise ValueError("sparse rows stay with the loader (they are batched on the host)")
        self.device = torch.device(device)
        self.sampler = loader.batch_sampler
        self.generator = loader.generator
        self.n_batches = len(loader)
        self.images = data.x.dtype == np.uint8 and data.x.ndim == 4
        self.x = torch.from_numpy(np.ascontiguousarray(data.x)).to(self.device)
        self.y = torch.from_numpy(data.y).to(self.device)
        self.fixed = None if data.fixed is None else torch.from_numpy(data.fixed).to(self.device)
        self.channels_last = channels_last

    @staticmethod
    def fits(data: TorchDataset[Any], device: torch.device, *, share: float = 0.25) -> bool:
        """Whether ``data`` is dense :class:`ArrayData` taking at most ``share`` of ``device``.

        Always true for the CPU, which holds it already.
        """
        if not isinstance(data, ArrayData) or sp.issparse(data.x):
            return False
        if device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(device)
        return bool(data.x.nbytes * (4 if data.x.dtype == np.uint8 else 1) <= share * free)

    def __len__(self) -> int:
        return self.n_batches

    def _inputs(self, idx: torch.Tensor) -> torch.Tensor:
        xb = self.x[idx]
        if self.images:  # as to_model_input: N x C x H x W floats in [0, 1]
            xb = xb.permute(0, 3, 1, 2).to(torch.float32) / 255.0
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            return xb.contiguous(memory_format=fmt)
        return xb.to(torch.float32)

    def __iter__(self) -> Any:
        assert self.sampler is not None
        if self.generator is not None:  # what a DataLoader iterator draws (its base seed)
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        batches = [list(b) for b in self.sampler]
        order = torch.tensor([i for b in batches for i in b], dtype=torch.int64)
        order = order.to(self.device, non_blocking=True)
        start = 0
        for b in batches:
            idx = order[start : start + len(b)]
            start += len(b)
            if self.fixed is not None:
                yield self._inputs(idx), self.y[idx], self.fixed[idx]
            else:
                yield self._inputs(idx), self.y[idx]
