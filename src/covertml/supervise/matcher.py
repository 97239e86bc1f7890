"""Is a training input one of the owner's items, or derived from one?

The guard sees every batch that enters a model and asks, for each input, how well the
owner's data explains it. Scripts differ in pixel layout (NCHW, NHWC, flattened), value
range and normalization, and in augmentation, so the comparison is made invariant to them:

* each input is brought to the owner's image shape (channels first or last, flattened rows,
  resized), and every channel is standardized per input (normalization, brightness and
  contrast changes drop out);
* a coarse 8x8 grey view finds candidate items among the owner's items and their mirror
  images; a finer view (at most 16x16) aligns each candidate under small shifts (crops with
  padding) and keeps the best correlation;
* a second item is then fitted to what the first leaves unexplained (mixup and cutmix mix two
  items), and the score is the square root of the share of the input the pair explains.

The score's null is built by the matcher itself: the owner's own items under random crops,
flips, colour and brightness jitter, mixup and cutmix. ``threshold`` is that null's
``quantile``; an input scoring below it is *unmatched*. Uniform noise is scored as well, to
state the test's power (``noise_pass``: the share of noise inputs the threshold would let
through). Text rows (TF-IDF) are compared by cosine similarity, with a null of the owner's
rows with a tenth of their words dropped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F  # noqa: N812

from covertml.data.base import Dataset

log = logging.getLogger(__name__)

COARSE = 8  # side of the candidate-search view
FINE = 16  # largest side of the alignment view
TOP_K = 6  # candidates aligned per input
CHUNK = 4096  # owner items compared at a time (bounds the shifted search's memory)


@dataclass(frozen=True)
class MatchStats:
    """How the matcher's threshold was set.

    Attributes:
        threshold: Inputs scoring below it match no owner item.
        quantile: Share of the augmented owner items (the null) below the threshold.
        null_median: Median score of the augmented owner items.
        noise_median: Median score of uniform-noise inputs of the owner's shape.
        noise_pass: Share of the noise inputs scoring at or above the threshold.
        items: Owner items indexed (training and test split).
    """

    threshold: float
    quantile: float
    null_median: float
    noise_median: float
    noise_pass: float
    items: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dict(self.__dict__)


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Each (input, channel) plane to zero mean; each input to unit norm."""
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    flat = x.reshape(x.shape[0], -1)
    out: torch.Tensor = (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-8)).reshape(x.shape)
    return out


def _view(x: torch.Tensor, side: tuple[int, int], *, grey: bool) -> torch.Tensor:
    if grey:
        x = x.mean(dim=1, keepdim=True)
    if tuple(x.shape[-2:]) != side:
        x = F.adaptive_avg_pool2d(x, side)
    return _standardize(x)


class InputMatcher:
    """Scores inputs by how well the owner's items explain them (1: exactly one item).

    Args:
        dataset: The owner's data; its training and test items are indexed.
        seed: Seed of the null's augmentations.
        null_size: Augmented owner items in the null.
        quantile: Share of the null allowed below the threshold (the per-input
            false-positive rate under augmentations like the null's).

    Example:
        >>> from covertml.data import create_dataset
        >>> m = InputMatcher(create_dataset("digits"), null_size=300)
        >>> x = torch.tensor(create_dataset("digits").train.x[:4]).permute(0, 3, 1, 2) / 16.0
        >>> bool((m.scores(x) >= m.stats.threshold).all())
        True
        >>> bool((m.scores(torch.rand(4, 64)) < m.stats.threshold).all())
        True
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        seed: int = 0,
        null_size: int = 800,
        quantile: float = 0.002,
        calibrate: bool = True,
    ) -> None:
        self.modality = dataset.modality
        self.seed = seed
        self.null_size, self.quantile = null_size, quantile
        self.stats: MatchStats | None = None
        self._owner: torch.Tensor | None = None
        if dataset.modality == "image":
            items = np.concatenate([np.asarray(dataset.train.x), np.asarray(dataset.test.x)])
            owner = torch.from_numpy(items).permute(0, 3, 1, 2).float()  # NHWC -> NCHW
            self.shape = tuple(int(v) for v in owner.shape[1:])
            _, h, w = self.shape
            scale = max(h, w) / FINE
            self.fine = (h, w) if scale <= 1 else (round(h / scale), round(w / scale))
            self.shift = max(1, round(self.fine[0] / 8))
            s = self.shift
            self.coarse = (min(self.fine[0] - 2 * s, COARSE), min(self.fine[1] - 2 * s, COARSE))
            self.offsets = [(dy, dx) for dy in range(2 * s + 1) for dx in range(2 * s + 1)]
            fine = _view(owner, self.fine, grey=False)
            self.fine_items = torch.cat([fine, fine.flip(-1)])  # mirror images after
            pooled = F.adaptive_avg_pool2d(owner, self.fine)
            mean = pooled.mean(dim=(-2, -1))
            norm = (pooled - mean[..., None, None]).flatten(1).norm(dim=1).clamp_min(1e-8)
            black = -mean / norm[:, None]  # raw 0 in each item's standardized view
            self.black = torch.cat([black, black])
            s = self.shift
            centre = self.fine_items[:, :, s : self.fine[0] - s, s : self.fine[1] - s]
            self.coarse_items = _view(centre, self.coarse, grey=True).reshape(2 * len(owner), -1)
            self.colour_items = (  # grey data: the same view, kept once
                self.coarse_items
                if owner.shape[1] == 1
                else _view(centre, self.coarse, grey=False).reshape(2 * len(owner), -1)
            )
            self.n = len(owner)
            self._owner = owner
        else:
            x = sp.vstack([sp.csr_matrix(dataset.train.x), sp.csr_matrix(dataset.test.x)])
            self.rows = _row_normalize(sp.csr_matrix(x, dtype=np.float32))
            self.shape = (int(self.rows.shape[1]),)
            self.n = int(self.rows.shape[0])
        if calibrate:
            self.calibrate()

    def calibrate(self) -> MatchStats:
        """Builds the null and sets :attr:`stats` (the threshold); deterministic per seed.

        A matcher made with ``calibrate=False`` scores inputs at once; the threshold can
        then be set later, or by another process holding the same data and seed (the
        guard's parent calibrates while its child runs the script).
        """
        if self.stats is not None:
            return self.stats
        rng = np.random.default_rng([self.seed, 0x6A4D])
        null_size, quantile = self.null_size, self.quantile
        null: torch.Tensor | sp.csr_matrix
        noise: torch.Tensor | sp.csr_matrix
        if self._owner is not None:
            null = self._augment(self._owner, rng, null_size)
            self._owner = None  # needed for the null only
            noise = torch.rand((max(100, null_size // 4), *self.shape), generator=_gen(rng))
        else:
            pick = rng.choice(self.n, size=min(null_size, self.n), replace=False)
            kept = self.rows[pick].copy()
            kept.data = kept.data * (rng.random(kept.data.size) >= 0.1)
            null, noise = kept, _random_rows(rng, len(pick), self.rows)
        null_scores = self._score(null)
        threshold = float(np.quantile(null_scores, quantile))
        noise_scores = self._score(noise)
        self.stats = MatchStats(
            threshold=threshold,
            quantile=quantile,
            null_median=float(np.median(null_scores)),
            noise_median=float(np.median(noise_scores)),
            noise_pass=float(np.mean(noise_scores >= threshold)),
            items=self.n,
        )
        log.info("input matcher: %s", self.stats)
        return self.stats

    def canonical(self, x: torch.Tensor) -> torch.Tensor | None:
        """``x`` as a float batch of the owner's shape, or ``None`` when it cannot be."""
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.is_complex():
            return None
        if not x.is_floating_point() and (self.modality != "image" or x.dtype == torch.bool):
            return None  # token ids, masks: nothing to compare (uint8 pixels are fine)
        x = x.detach().to("cpu", torch.float32)
        if x.layout != torch.strided:  # sparse text rows
            x = x.to_dense()
        if self.modality != "image":
            return x.reshape(len(x), -1) if x[0].numel() == self.shape[0] else None
        c, h, w = self.shape
        if x.ndim == 2 and x.shape[1] == c * h * w:
            planar = x.reshape(-1, c, h, w)
            if c == 1:
                return planar
            interleaved = x.reshape(-1, h, w, c).permute(0, 3, 1, 2)
            return planar if _roughness(planar) <= _roughness(interleaved) else interleaved
        if x.ndim == 3 and c == 1:
            x = x[:, None]
        if x.ndim != 4:
            return None
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            x = x.permute(0, 3, 1, 2)
        if x.shape[1] != c:
            if x.shape[1] not in (1, 3):
                return None
            x = x.mean(dim=1, keepdim=True).expand(-1, c, -1, -1)  # grey script, colour data
        if x.shape[-2] * 2 < h or x.shape[-1] * 2 < w:
            return None  # far below the owner's resolution: nothing left to compare
        return x

    def scores(self, x: torch.Tensor) -> np.ndarray | None:
        """The score of each input of batch ``x`` (``None``: not comparable with the data)."""
        batch = self.canonical(x)
        return None if batch is None else self._score(batch)

    def score_canonical(self, batch: torch.Tensor) -> np.ndarray:
        """Scores of a batch already in the owner's shape (:meth:`canonical`)."""
        return self._score(batch)

    def _score(self, batch: torch.Tensor | sp.csr_matrix) -> np.ndarray:
        if isinstance(batch, sp.spmatrix):  # text rows (the null and the noise)
            rows = _row_normalize(sp.csr_matrix(batch, dtype=np.float32))
            return np.concatenate(
                [
                    (self.rows @ rows[i : i + 200].T).max(axis=0).toarray().ravel()
                    for i in range(0, rows.shape[0], 200)
                ]
            ).astype(np.float64)
        with torch.no_grad():
            if self.modality != "image":
                x = batch / batch.norm(dim=1, keepdim=True).clamp_min(1e-8)
                sims = np.asarray(self.rows @ x.numpy().T)  # items x batch
                return np.asarray(sims.max(axis=0), dtype=np.float64)
            out = []
            for start in range(0, len(batch), 256):
                out.append(self._score_images(batch[start : start + 256]))
            return np.concatenate(out)

    def _candidates(self, fine: torch.Tensor, *, shifts: bool = True) -> torch.Tensor:
        """Items (mirror images from ``n``) whose centres best match a window of ``fine``.

        A crop with padding moves the item by up to ``shift`` pixels and brings in a
        border: the item's centre, compared with every window of the input of its size,
        is found wherever the crop put it.
        """
        s = self.shift
        h, w = self.fine[0] - 2 * s, self.fine[1] - 2 * s
        k = min(TOP_K, len(self.colour_items))
        colour = _view(fine[:, :, s : s + h, s : s + w], self.coarse, grey=False)
        centred = (colour.reshape(len(fine), -1) @ self.colour_items.T).topk(k, dim=1).indices
        if not shifts:  # mixtures: in colour, unshifted
            return centred
        views = torch.stack(
            [
                _view(fine[:, :, dy : dy + h, dx : dx + w], self.coarse, grey=True)
                for dy, dx in self.offsets
            ],
            dim=1,
        ).reshape(len(fine) * len(self.offsets), -1)
        best = torch.full((len(fine), 0), -2.0)
        which = torch.zeros((len(fine), 0), dtype=torch.long)
        for start in range(0, len(self.coarse_items), CHUNK):  # running top-k over items
            sims = (views @ self.coarse_items[start : start + CHUNK].T).reshape(
                len(fine), len(self.offsets), -1
            )
            top = sims.amax(dim=1).topk(min(k, sims.shape[2]), dim=1)
            best = torch.cat([best, top.values], dim=1)
            which = torch.cat([which, top.indices + start], dim=1)
            keep = best.topk(min(k, best.shape[1]), dim=1).indices
            best, which = best.gather(1, keep), which.gather(1, keep)
        return torch.cat([centred, which], dim=1)  # crops: the best shift

    def _score_images(self, batch: torch.Tensor) -> np.ndarray:
        fine = _view(batch, self.fine, grey=False)
        first, aligned = self._best(fine, self._candidates(fine))
        a = aligned.reshape(len(batch), -1)
        x = fine.reshape(len(batch), -1)
        residual = _standardize((x - (x * a).sum(1, keepdim=True) * a).reshape(fine.shape))
        _, second = self._best(residual, self._candidates(residual, shifts=False))
        explained = _two_item_fit(x, a, second.reshape(len(batch), -1))
        return np.asarray(np.maximum(first, explained), dtype=np.float64)

    def _best(self, fine: torch.Tensor, cand: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """Best correlation over the candidates and shifts, and the aligned item."""
        k = cand.shape[1]
        items = self.fine_items[cand]  # batch x k x C x h x w
        bsz, _, ch, h, w = items.shape
        s = self.shift
        padded = self.black[cand].reshape(bsz * k, ch, 1, 1).expand(-1, -1, h + 2 * s, w + 2 * s)
        padded = padded.clone()  # a crop's border is black, in each item's own standardization
        padded[:, :, s : s + h, s : s + w] = items.reshape(bsz * k, ch, h, w)
        kernels = fine.repeat_interleave(k, dim=0)  # (batch*k) x C x h x w
        dots = F.conv2d(
            padded.reshape(1, bsz * k * ch, h + 2 * s, w + 2 * s), kernels, groups=bsz * k
        )[0]
        ones = torch.ones((ch, 1, h, w))
        flat = padded.reshape(bsz * k, ch, h + 2 * s, w + 2 * s)
        energy = F.conv2d(flat.pow(2), ones, groups=ch)  # per channel, per shift
        total = F.conv2d(flat, ones, groups=ch)
        var = (energy - total.pow(2) / (h * w)).sum(1).clamp_min(1e-12)
        corr = (dots / var.sqrt()).reshape(bsz, k, -1)  # fine inputs have zero mean, unit norm
        best = corr.reshape(bsz, -1).argmax(dim=1)
        which, where = best // corr.shape[2], best % corr.shape[2]
        side = 2 * s + 1
        dy, dx = where // side, where % side
        rows = torch.arange(bsz)
        chosen = flat.reshape(bsz, k, ch, h + 2 * s, w + 2 * s)[rows, which]
        aligned = torch.stack(
            [chosen[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(bsz)]
        )
        score = corr.reshape(bsz, -1).max(dim=1).values.clamp(-1, 1)
        return score.numpy(), _standardize(aligned)

    def _augment(self, owner: torch.Tensor, rng: np.random.Generator, n: int) -> torch.Tensor:
        """Owner items under random crops, flips, jitter, mixup and cutmix (the null)."""
        c, h, w = self.shape
        pick = torch.from_numpy(rng.integers(0, len(owner), size=n))
        x = owner[pick] / 255.0
        pad = max(1, round(h / 8))
        padded = F.pad(x, (pad, pad, pad, pad))
        dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
        x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
        flip = torch.from_numpy(rng.random(n) < 0.5)
        x[flip] = x[flip].flip(-1)
        gain = torch.from_numpy(rng.uniform(0.8, 1.2, size=(n, c, 1, 1))).float()
        x = x * gain + torch.from_numpy(rng.uniform(-0.2, 0.2, size=(n, 1, 1, 1))).float()
        other = owner[torch.from_numpy(rng.integers(0, len(owner), size=n))] / 255.0
        kind = rng.random(n)
        lam = torch.from_numpy(rng.uniform(0.3, 0.7, size=(n, 1, 1, 1))).float()
        mix = torch.from_numpy(kind < 0.2)
        x[mix] = (lam * x + (1 - lam) * other)[mix]
        for i in np.flatnonzero((kind >= 0.2) & (kind < 0.4)):  # cutmix: a box of another
            bh, bw = (
                max(1, round(h * math.sqrt(rng.uniform(0.1, 0.4)))),
                max(1, round(w * math.sqrt(rng.uniform(0.1, 0.4)))),
            )
            y0, x0 = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
            x[i, :, y0 : y0 + bh, x0 : x0 + bw] = other[i, :, y0 : y0 + bh, x0 : x0 + bw]
        return x


def _roughness(x: torch.Tensor) -> float:
    """Mean difference between horizontal neighbours (natural images are smooth)."""
    return float((x[:16, :, :, 1:] - x[:16, :, :, :-1]).abs().mean())


def _two_item_fit(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Sqrt of the share of each (unit, zero-mean) row of ``x`` that ``a`` and ``b`` explain."""
    aa, bb, ab = (a * a).sum(1), (b * b).sum(1), (a * b).sum(1)
    xa, xb = (x * a).sum(1), (x * b).sum(1)
    det = (aa * bb - ab * ab).clamp_min(1e-12)
    ca, cb = (xa * bb - xb * ab) / det, (xb * aa - xa * ab) / det
    r2 = (ca * xa + cb * xb).clamp(0, 1)
    return r2.sqrt().numpy()


def _row_normalize(x: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
    return sp.csr_matrix(sp.diags(1 / np.maximum(norms, 1e-12)) @ x)


def _random_rows(rng: np.random.Generator, n: int, rows: sp.csr_matrix) -> sp.csr_matrix:
    """Documents of random words, as long as the owner's (the text noise)."""
    length = max(1, int(np.median(np.diff(rows.indptr))))
    cols = rng.integers(0, rows.shape[1], size=n * length)
    data = np.ones(n * length, dtype=np.float32)
    return sp.csr_matrix(
        (data, cols, np.arange(0, n * length + 1, length)), shape=(n, rows.shape[1])
    )


def _gen(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
