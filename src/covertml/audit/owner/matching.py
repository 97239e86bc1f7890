"""The two stages of an owner audit: find where items would sit, then test who matches.

1. **Alignment** (uses no labels). Within a window, an item-sized piece that starts where an
   item starts looks like an image of the owner's data: most of its energy falls on the
   leading principal components of the owner's items. The share of energy at every offset is
   computed at once with FFT cross-correlations; the start (phase) whose pieces look most
   like items is kept.
2. **The test** (the null is the owner's held-out items). The pieces at that phase are
   correlated with the owner's training items and with as many of the owner's *test* items,
   which the model never trained on. Each item gets its best |correlation| with any piece.
   If the weights encode nothing of the training set, training and test items are
   exchangeable, and the number of training items among the ``k`` best-matching items is
   hypergeometric -- an exact p-value, whatever the weights and the data look like. An
   honest layer that resembles images of the task resembles test images just as much;
   an encoding favours the very items it encodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import fft, stats

from covertml.audit.owner.layouts import unit_rows


def components(rows: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` leading principal directions of centered unit ``rows`` (``k x P``).

    Example:
        >>> r = unit_rows(np.random.default_rng(0).normal(size=(30, 6)))
        >>> pcs = components(r, 2)
        >>> pcs.shape, bool(np.allclose(pcs @ pcs.T, np.eye(2), atol=1e-6))
        ((2, 6), True)
    """
    r = rows.astype(np.float64)
    if r.shape[0] >= r.shape[1]:
        _, _, vt = np.linalg.svd(r, full_matrices=False)
        out: np.ndarray = vt[: min(k, vt.shape[0])]
        return out
    # fewer rows than values: the leading directions from the rows' Gram matrix (an
    # n x n eigenproblem instead of an n x P decomposition)
    evals, evecs = np.linalg.eigh(r @ r.T)
    top = np.argsort(evals)[::-1][: min(k, r.shape[0])]
    keep = top[evals[top] > 1e-12 * max(float(evals.max()), 1e-300)]
    out = (evecs[:, keep].T @ r) / np.sqrt(evals[keep])[:, None]
    return out


def energy_by_offset(values: np.ndarray, pcs: np.ndarray) -> np.ndarray:
    """Share of each item-sized piece's centered energy on ``pcs``, at every start offset.

    Example:
        >>> pcs = np.array([[1.0, -1.0, 0.0, 0.0]]) / np.sqrt(2)
        >>> energy_by_offset(np.array([0.0, 5.0, -5.0, 0.0, 0.0]), pcs).round(2).tolist()
        [0.25, 1.0]
    """
    p = pcs.shape[1]
    v = values.astype(np.float64)
    if v.size < p:
        return np.zeros(0)
    # one transform of the window for all components (correlation = convolution with the
    # reversed component; the valid part starts where the whole component overlaps)
    size = fft.next_fast_len(v.size + p - 1, real=True)
    spectrum = fft.rfft(v, size)
    kernels = fft.rfft(pcs[:, ::-1], size, axis=1)
    proj = fft.irfft(kernels * spectrum, size, axis=1)[:, p - 1 : v.size]
    c1 = np.concatenate([[0.0], np.cumsum(v)])
    c2 = np.concatenate([[0.0], np.cumsum(v * v)])
    s1 = c1[p:] - c1[:-p]
    s2 = c2[p:] - c2[:-p]
    norm2 = s2 - s1 * s1 / p
    # the pcs are orthogonal to constants, so projecting the raw piece is projecting the
    # centered one
    out: np.ndarray = np.divide(
        (proj**2).sum(0), norm2, out=np.zeros_like(norm2), where=norm2 > 1e-12 * p
    )
    clipped: np.ndarray = np.clip(out, 0.0, 1.0)
    return clipped


def best_phase(energy: np.ndarray, size: int, *, run: int = 16) -> tuple[int, float]:
    """The start in ``[0, size)`` whose pieces look most like items somewhere in the window.

    A phase is scored by the best mean ``energy`` of ``run`` consecutive whole pieces, so
    that a secret filling a small part of a window is aligned by its own pieces, not by the
    rest of the window.

    Example:
        >>> best_phase(np.array([0.1, 0.9, 0.1, 0.1, 0.7, 0.2, 0.1]), 3, run=2)
        (1, 0.8)
    """
    n = energy.size // size
    if n == 0:
        return 0, 0.0
    per_piece = energy[: n * size].reshape(n, size)  # row i: piece i at every phase
    k = min(run, n)
    sums = np.cumsum(np.vstack([np.zeros((1, size)), per_piece]), axis=0)
    local = (sums[k:] - sums[:-k]) / k  # mean of k consecutive pieces, per phase
    scores = local.max(axis=0)
    phase = int(scores.argmax())
    return phase, float(round(scores[phase], 12))


def pieces_at(values: np.ndarray, phase: int, size: int, limit: int) -> np.ndarray:
    """Up to ``limit`` consecutive item-sized pieces starting at ``phase`` (``n x size``)."""
    n = min(limit, (values.size - phase) // size)
    return values[phase : phase + n * size].reshape(n, size)


@dataclass(frozen=True)
class ItemTest:
    """The outcome of one training-vs-held-out item test.

    Attributes:
        log10_p: log10 of the p-value, Bonferroni over the selections and ``k`` tried
            (kept as a logarithm: strong encodings are far beyond floating-point range).
        k: Size of the selection that gave the smallest p.
        train_in_top: Training items among the ``k`` best-matching items.
        expected: What the null expects there, ``k * n_train / (n_train + n_test)``.
        selection: Which label-free selection of items gave the smallest p.
        top_train: Indices (into the training rows given) of the best-matching training
            items, best first, with their |correlation|.
        best_test: The best |correlation| of any held-out item.
    """

    log10_p: float
    k: int
    train_in_top: int
    expected: float
    selection: str
    top_train: tuple[tuple[int, float], ...]
    best_test: float

    def evidence(self, train_ids: np.ndarray) -> dict[str, Any]:
        """JSON-able evidence, with training items named by their index in the dataset."""
        return {
            "selection": self.selection,
            "k": self.k,
            "train_items_in_top_k": self.train_in_top,
            "expected_under_null": round(self.expected, 2),
            "best_train_matches": [
                {"train_index": int(train_ids[i]), "abs_corr": round(c, 4)}
                for i, c in self.top_train[:5]
            ],
            "best_heldout_abs_corr": round(self.best_test, 4),
        }


@dataclass(frozen=True, eq=False)
class Matches:
    """How pieces and pooled items (training first, then held-out) match.

    Attributes:
        by_item: Each item's best |correlation| with any piece.
        piece_best: Each piece's best |correlation| with any item.
        piece_item: The item that gives it.
    """

    by_item: np.ndarray
    piece_best: np.ndarray
    piece_item: np.ndarray

    @classmethod
    def of(cls, corr: np.ndarray) -> Matches:
        """From a dense ``pieces x items`` matrix of |correlation|."""
        return cls(corr.max(axis=0), corr.max(axis=1), corr.argmax(axis=1))

    @classmethod
    def merge(cls, parts: list[Matches]) -> Matches:
        """Matches of consecutive chunks of pieces, against the same items."""
        return cls(
            np.max([p.by_item for p in parts], axis=0),
            np.concatenate([p.piece_best for p in parts]),
            np.concatenate([p.piece_item for p in parts]),
        )


def item_test(
    pieces: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    *,
    ks: tuple[int, ...],
    pooled: np.ndarray | None = None,
) -> ItemTest:
    """Hypergeometric test: do the pieces match training items more than held-out ones?

    ``train`` and ``test`` are unit rows (:func:`unit_rows`) of the owner's items;
    ``pooled``, when given, is their concatenation, made once by a caller that tests
    many windows against the same items.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> train, test = unit_rows(rng.normal(size=(50, 16))), unit_rows(rng.normal(size=(50, 16)))
        >>> encoded = item_test(train[:20] + 0.1 * rng.normal(size=(20, 16)), train, test, ks=(8,))
        >>> encoded.train_in_top, encoded.log10_p < -2
        (8, True)
    """
    u = unit_rows(pieces.astype(np.float32))
    both = np.concatenate([train, test]) if pooled is None else pooled
    matches = Matches.of(np.abs(u @ both.T))
    return selection_test(matches, len(train), len(test), ks=ks)


def selection_test(matches: Matches, n_train: int, n_test: int, *, ks: tuple[int, ...]) -> ItemTest:
    """The exact test behind :func:`item_test`, from precomputed :class:`Matches`.

    Two label-free selections of items are tested at each ``k``: the ``k`` items best
    matched by any piece, and the items that the ``k`` best-matching pieces match best. Any
    selection made without looking at which items are training items leaves the count of
    training items in it hypergeometric under the null, so both p-values are exact; the
    reported one is Bonferroni-corrected over both selections and every ``k``.
    """
    is_train = np.concatenate([np.ones(n_train, bool), np.zeros(n_test, bool)])
    item_order = np.argsort(-matches.by_item, kind="stable")
    piece_order = np.argsort(-matches.piece_best, kind="stable")
    n = n_train + n_test
    usable = [k for k in ks if 1 <= k <= n // 2] or [max(1, n // 2)]
    best: tuple[float, int, int, str] = (1.0, usable[0], 0, "")
    for k in usable:
        selections = {
            "best-matched items": item_order[:k],
            "items best matching the best pieces": np.unique(matches.piece_item[piece_order[:k]]),
        }
        for how, chosen in selections.items():
            x, size = int(is_train[chosen].sum()), int(chosen.size)
            p = float(stats.hypergeom.logsf(x - 1, n, n_train, size) / np.log(10))
            if p < best[0]:
                best = (p, size, x, how)
    p_min, k, x, how = best
    m_train = matches.by_item[:n_train]
    top = np.argsort(-m_train)[:8]
    return ItemTest(
        log10_p=min(0.0, float(np.log10(2 * len(usable))) + p_min),
        k=k,
        train_in_top=x,
        expected=k * n_train / n,
        selection=how,
        top_train=tuple((int(i), float(m_train[i])) for i in top),
        best_test=float(matches.by_item[n_train:].max()) if n_test else 0.0,
    )


def sample_ids(n: int, limit: int, rng: np.random.Generator, *, first: bool) -> np.ndarray:
    """Up to ``limit`` of ``n`` item indices: all of them when they fit, else a sample.

    With ``first`` (training items), half are the first items, what attacks take, and half
    a seeded sample of the rest; otherwise (held-out items) all are a seeded sample.

    Example:
        >>> sample_ids(10, 4, np.random.default_rng(0), first=True)[:2].tolist()
        [0, 1]
        >>> sample_ids(3, 4, np.random.default_rng(0), first=False).tolist()
        [0, 1, 2]
    """
    if n <= limit:
        return np.arange(n)
    if not first:
        return np.sort(rng.choice(n, limit, replace=False))
    head = np.arange(limit // 2)
    rest = rng.choice(np.arange(head.size, n), limit - head.size, replace=False)
    return np.concatenate([head, np.sort(rest)])
