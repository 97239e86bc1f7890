"""The dataset-order test: do consecutive pieces hold the owner's first items, in order?

Attacks take the first training items in the order the training code sees them. That
order is a second null the owner can build: under a random order of the same items, piece
and item are paired at random. Conditional on the matrix of |correlation| between pieces
and items, the test is free of any assumption about what honest weights look like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from covertml.audit.owner.layouts import unit_rows


@dataclass(frozen=True)
class OrderTest:
    """The outcome of the dataset-order test.

    Attributes:
        log10_p: log10 of the Bernstein tail bound under random orders, Bonferroni over
            the shifts.
        shift: Pieces before the first item (where the run of items starts).
        length: Pieces compared along that run.
        mean_abs_corr: Mean |correlation| of piece ``shift + j`` with training item ``j``.
        null_mean: What random orders of the same items give on average.
    """

    log10_p: float
    shift: int
    length: int
    mean_abs_corr: float
    null_mean: float

    def evidence(self) -> dict[str, Any]:
        """JSON-able evidence."""
        return {
            "run_starts_at_piece": self.shift,
            "pieces_in_run": self.length,
            "mean_abs_corr_in_order": round(self.mean_abs_corr, 4),
            "mean_abs_corr_random_orders": round(self.null_mean, 4),
        }


def order_test(pieces: np.ndarray, first: np.ndarray, *, min_run: int = 8) -> OrderTest:
    """Do consecutive pieces match the owner's first training items in dataset order?

    Attacks take the first training items in order, so piece ``shift + j`` holds item ``j``.
    The null permutes the items' order: piece and item are then paired at random, and the
    sum of |correlation| along the run concentrates around its permutation mean. The tail
    is bounded with Bernstein's inequality (the permutation variance, and each term's
    largest possible deviation given the matrix), which is conservative where a normal
    approximation would not be. ``first`` are the
    unit rows of the first training items, in order.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> first = unit_rows(rng.normal(size=(40, 32)))
        >>> noise = 0.1 * rng.normal(size=(30, 32))
        >>> pieces = np.concatenate([rng.normal(size=(3, 32)), first[:30] + noise])
        >>> t = order_test(pieces, first)
        >>> t.shift, t.length, t.log10_p < -6
        (3, 30, True)
    """
    u = unit_rows(pieces.astype(np.float32))
    return order_test_of(np.abs(u @ first.T), min_run=min_run)


ORDER_ITEMS = 256  # the first items a run is tested against


def order_test_of(corr: np.ndarray, *, min_run: int = 8, max_items: int = ORDER_ITEMS) -> OrderTest:
    """:func:`order_test` from a precomputed ``pieces x first items`` |correlation| matrix.

    Two statistics along each candidate run, Bonferroni over both and over the shifts:
    the sum of |correlation| (Bernstein bound: many pieces slightly closer to their items)
    and Fisher's combination of each piece's rank p-value, the share of items it matches at
    least as well as its own (few pieces, each matching its own item best). Under a random
    order each rank p-value is uniform; pieces use distinct items, which only makes Fisher's
    chi-squared conservative. Runs over the first ``max_items`` items are tested.

    Example:
        >>> corr = np.full((4, 100), 0.1)
        >>> corr[np.arange(4), np.arange(4)] = 0.9  # piece j matches item j best
        >>> round(order_test_of(corr, min_run=4).log10_p)
        -5
    """
    corr = corr[:, :max_items].astype(np.float64)
    n_p, n_f = corr.shape
    n_shifts = max(0, n_p - min_run + 1)
    if n_shifts == 0 or n_f == 0:
        return OrderTest(0.0, 0, 0, 0.0, 0.0)
    row_mean = corr.mean(axis=1)
    row_var = corr.var(axis=1)
    # conditional on the matrix, the term of row i is one of its entries: |term - mean| <= b_i
    row_range = np.abs(corr - row_mean[:, None]).max(axis=1)
    # share of row i's entries at least as large as entry (i, j): the rank p-value
    order = np.argsort(-corr, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1, n_f + 1), corr.shape), axis=1)
    log_rank_p = np.log(ranks / n_f)
    # every run at once: row c + j pairs with item j, for j < length(c)
    c = np.arange(n_shifts)[:, None]
    j = np.arange(n_f)[None, :]
    rows = c + j
    valid = rows < n_p
    rows = np.where(valid, rows, 0)
    length = valid.sum(axis=1)
    s = np.where(valid, corr[rows, j], 0.0).sum(axis=1)
    mean = np.where(valid, row_mean[rows], 0.0).sum(axis=1)
    var = np.where(valid, row_var[rows], 0.0).sum(axis=1)
    b = np.where(valid, row_range[rows], 0.0).max(axis=1)
    fisher = -2.0 * np.where(valid, log_rank_p[rows, j], 0.0).sum(axis=1)
    t = s - mean
    ln10 = float(np.log(10))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_sum = np.where(t > 0, -(t * t) / (2 * (var + b * t / 3)) / ln10, 0.0)
    p_rank = stats.chi2.logsf(fisher, 2 * length) / ln10
    p = np.minimum(p_sum, p_rank)
    k = int(np.argmin(p))
    tried = float(np.log10(2 * n_shifts))
    return OrderTest(
        min(0.0, tried + float(p[k])),
        k,
        int(length[k]),
        float(s[k] / length[k]),
        float(mean[k] / length[k]),
    )
