"""Owner audits on images: do the weights' values, or their signs, spell the owner's images?

The owner knows the training images; the attacker's layout is unknown. Every window of
every carrier stream (:mod:`~covertml.audit.owner.streams`) is searched in every distinct
representation (:mod:`~covertml.audit.owner.layouts`); for signs also in both bit orders
(MSB- or LSB-first) at each of the 8 bit offsets, either polarity. The alignment in each
window is chosen without labels, and the verdict is the exact train-vs-held-out test of
:mod:`~covertml.audit.owner.matching`, Bonferroni-corrected for the representations and
``k`` tried in the window (``tests``), then Holm-corrected over the windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from covertml.audit.base import (
    DEFAULT_ALPHA,
    Detector,
    DetectorReport,
    Finding,
    ScanContext,
    register_detector,
    report_from_findings,
)
from covertml.audit.owner.layouts import Layout, candidate_layouts, distinct_layouts, unit_rows
from covertml.audit.owner.matching import (
    ItemTest,
    best_phase,
    components,
    energy_by_offset,
    item_test,
    pieces_at,
    sample_ids,
)
from covertml.audit.owner.order import OrderTest, order_test
from covertml.audit.owner.streams import Window, windows
from covertml.data.base import Dataset

NULL = (
    "the owner's held-out (test) items are matched as well as the training items "
    "(hypergeometric, exact), and the first training items in dataset order no better than "
    "in a random order (rank and Bernstein bounds)"
)


def owner_sample(
    ds: Dataset, *, max_items: int, max_values: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and held-out items compared.

    Up to ``max_items`` of each (and ``max_values`` items' worth of memory): all of them
    when they fit; otherwise half the training items are the first ones (what attacks
    take) and half a seeded sample of the rest, and the held-out items a seeded sample of
    the test split.

    Example:
        >>> from covertml.data import create_dataset
        >>> tr, te = owner_sample(create_dataset("digits"), max_items=100, max_values=10**6, seed=0)
        >>> len(tr), len(te), tr[:3].tolist()
        (100, 100, [0, 1, 2])
    """
    limit = max(8, min(max_items, max_values))
    rng = np.random.default_rng([seed, 0x0A11])
    train = sample_ids(len(ds.train), limit, rng, first=True)
    test = sample_ids(len(ds.test), limit, rng, first=False)
    return train.astype(np.int64), test.astype(np.int64)


def sign_bytes(values: np.ndarray, *, offset: int, order: Literal["big", "little"]) -> np.ndarray:
    """Bytes spelled by the signs of ``values[offset:]`` (positive = 1), 8 signs a byte.

    Example:
        >>> v = np.array([1, -1, -1, -1, -1, -1, -1, -1.0])
        >>> [sign_bytes(v, offset=0, order=o).tolist() for o in ("big", "little")]
        [[128.0], [1.0]]
    """
    bits = (values[offset:] > 0).astype(np.uint8)
    bits = bits[: bits.size - bits.size % 8]
    out: np.ndarray = np.packbits(bits, bitorder=order).astype(np.float32)
    return out


@dataclass(frozen=True)
class _Candidate:
    result: ItemTest
    order: OrderTest
    layout: str
    merged: list[str]
    phase: int
    alignment: float
    bits: str | None
    decodings: int = 1

    @property
    def log10_p(self) -> float:
        """Bonferroni over the two tests (any order; dataset order) and the decodings."""
        worst = np.log10(2 * self.decodings) + min(self.result.log10_p, self.order.log10_p)
        return min(0.0, float(worst))


@dataclass(frozen=True, kw_only=True)
class _ImageAudit(Detector):
    """Shared options and search of the two image audits.

    Attributes:
        max_items: Owner items compared per side (training, held-out).
        max_cells: Items x values held per representation (memory bound).
        pieces: Item-sized pieces tested per window (at least; small items get as many as
            fit in ``piece_values`` values).
        piece_values: Values per window tested, for small items.
        max_windows: Windows searched (stream starts first, then tensor starts).
        components: Principal components used to align pieces with items.
        ks: Sizes of the best-matching sets tested (Bonferroni over them).
        bit_candidates: Sign audit: bit decodings (of 2 orders x 8 offsets) tested per
            window, the best aligned ones (Bonferroni over them).
    """

    kind: ClassVar[str] = "owner-audit"
    by_signs: ClassVar[bool] = False

    max_items: int = 2048
    max_cells: int = 16_000_000
    pieces: int = 64
    piece_values: int = 2**16
    max_windows: int = 48
    components: int = 4
    ks: tuple[int, ...] = (8, 32, 128, 512)
    bit_candidates: int = 4

    def unavailable(self, ctx: ScanContext) -> str | None:
        """Needs the owner's data with a held-out split."""
        if ctx.dataset is None:
            return "needs the owner's training data (--dataset)"
        if ctx.dataset.modality != "image" and self.by_signs:
            return "the sign audit reads pixel bytes: image data only (text: owner-correlation)"
        if ctx.dataset.modality == "text" and ctx.dataset.train.documents is None:
            return "needs the owner's documents as token sequences"
        if len(ctx.dataset.test) < 8:
            return "needs at least 8 held-out (test) items of the owner's data as its null"
        return None

    def _streams(self, window: Window) -> list[tuple[np.ndarray, str | None]]:
        if not self.by_signs:
            return [(window.values, None)]
        orders: tuple[tuple[Literal["big", "little"], str], ...] = (
            ("big", "MSB"),
            ("little", "LSB"),
        )
        return [
            (sign_bytes(window.values, offset=b, order=order), f"{name}-first, bit offset {b}")
            for order, name in orders
            for b in range(8)
        ]

    def _search(
        self,
        layout: Layout,
        pcs: np.ndarray,
        train: np.ndarray,
        test: np.ndarray,
        streams: list[tuple[np.ndarray, str | None]],
        merged: list[str],
        *,
        first: int,
        pooled: np.ndarray,
    ) -> _Candidate | None:
        p = layout.size
        aligned = []
        for values, bits in streams:
            if values.size >= 2 * p:
                phase, share = best_phase(energy_by_offset(values, pcs), p)
                aligned.append((share, phase, values, bits))
        aligned.sort(key=lambda a: -a[0])
        tried = aligned[: self.bit_candidates if self.by_signs else 1]
        best: _Candidate | None = None
        for share, phase, values, bits in tried:
            pieces = pieces_at(values, phase, p, max(self.pieces, self.piece_values // p))
            if len(pieces) < 2:
                continue
            result = item_test(pieces, train, test, ks=self.ks, pooled=pooled)
            order = order_test(pieces, train[:first])
            cand = _Candidate(result, order, layout.name, merged, phase, share, bits, len(tried))
            if best is None or cand.log10_p < best.log10_p:
                best = cand
        return best

    def run(self, ctx: ScanContext, *, alpha: float = DEFAULT_ALPHA) -> DetectorReport:
        """Searches every window in every representation; one finding per window."""
        ds = ctx.dataset
        assert ds is not None
        images = np.asarray(ds.train.x)
        p_max = 3 * images.shape[1] * images.shape[2]
        train_ids, test_ids = owner_sample(
            ds, max_items=self.max_items, max_values=self.max_cells // p_max, seed=ctx.seed
        )
        first = int(np.sum(train_ids == np.arange(train_ids.size)))  # the first items, in order
        stats_ids = np.random.default_rng([ctx.seed, 7]).choice(
            len(ds.train), min(2048, len(ds.train)), replace=False
        )
        stats_images = images[np.sort(stats_ids)]
        layouts = [
            (t, m)
            for t, m in distinct_layouts(candidate_layouts(stats_images), stats_images[:64])
            if t.byte_valued or not self.by_signs
        ]
        p_most = max(t.size for t, _ in layouts)
        length = max(self.piece_values, (self.pieces + 1) * p_most) * (8 if self.by_signs else 1)
        found = windows(ctx.tensors, model=ctx.model, length=length, max_windows=self.max_windows)
        best: dict[int, _Candidate] = {}
        decodings = self.bit_candidates if self.by_signs else 1
        tests_per_window = 2 * len(layouts) * decodings * (2 * len(self.ks) + 1)
        streams = [self._streams(w) for w in found]  # the sign decodings, once per window
        train_images, test_images = images[train_ids], np.asarray(ds.test.x)[test_ids]
        for layout, merged in layouts:
            train = unit_rows(layout.rows(train_images))
            test = unit_rows(layout.rows(test_images))
            pooled = np.concatenate([train, test])
            pick = np.random.default_rng(layout.size).choice(
                len(pooled), min(512, len(pooled)), replace=False
            )
            pcs = components(pooled[pick], self.components)
            both = pooled.astype(np.float32)  # what pieces (float32) are correlated with
            for i, window_streams in enumerate(streams):
                cand = self._search(
                    layout, pcs, train, test, window_streams, merged, first=first, pooled=both
                )
                if cand is not None and (i not in best or cand.log10_p < best[i].log10_p):
                    best[i] = cand
        findings = [
            self._finding(found[i], cand, train_ids, tests_per_window, len(layouts))
            for i, cand in best.items()
        ]
        what = "signs (8 per byte)" if self.by_signs else "values"
        note = (
            f"item-sized pieces of each window's {what}, aligned without labels, matched with "
            f"{len(train_ids)} training and {len(test_ids)} held-out items of the owner's data in "
            f"{len(layouts)} representations; flagged when training items match far better "
            "than held-out ones, or the first training items line up in dataset order, beyond "
            "chance"
        )
        return report_from_findings(self.name, findings, alpha=alpha, note=note)

    def _finding(
        self, window: Window, cand: _Candidate, train_ids: np.ndarray, tests: int, n_layouts: int
    ) -> Finding:
        r = cand.result
        in_order = cand.order.log10_p < r.log10_p
        log10_p = min(0.0, float(np.log10(n_layouts)) + cand.log10_p)
        evidence: dict[str, Any] = {
            "test": "dataset order" if in_order else "training vs held-out items",
            "representation": cand.layout,
            "same_as": cand.merged,
            "item_offset": cand.phase,
            "alignment": round(cand.alignment, 4),
            "log10_p": round(log10_p, 2),
            **r.evidence(train_ids),
            **cand.order.evidence(),
        }
        if cand.bits is not None:
            evidence["bits"] = cand.bits
        return Finding(
            self.name,
            window.label,
            score=cand.order.mean_abs_corr if in_order else r.train_in_top / r.k,
            p_value=float(10.0**log10_p),
            null=NULL,
            tests=tests,
            evidence=evidence,
        )


@register_detector
@dataclass(frozen=True, kw_only=True)
class OwnerCorrelation(_ImageAudit):
    """Owner audit: weight values correlated with the owner's images or documents.

    Attributes:
        prefix: Text: tokens of each document matched (its first ``prefix``).
        text_windows: Text: windows searched for token sequences (every offset in each).
        text_window_values: Text: values per window.
        text_items: Text: documents compared per side (training, held-out).
    """

    name: ClassVar[str] = "owner-correlation"

    prefix: int = 64
    text_windows: int = 8
    text_window_values: int = 16384
    text_items: int = 1024

    def run(self, ctx: ScanContext, *, alpha: float = DEFAULT_ALPHA) -> DetectorReport:
        """Images: see the class; text: token sequences and bag-of-words rows."""
        assert ctx.dataset is not None
        if ctx.dataset.modality == "image":
            return super().run(ctx, alpha=alpha)
        from covertml.audit.owner.text import text_findings

        findings = text_findings(
            self.name,
            ctx,
            prefix=self.prefix,
            max_items=self.text_items,
            max_windows=self.text_windows,
            window_values=self.text_window_values,
            ks=self.ks,
        )
        note = (
            f"token-id pieces at every offset of each window (first {self.prefix} tokens of "
            "each document), and weight rows/columns as long as the vocabulary (TF-IDF and "
            "counts), matched with the owner's training and held-out documents"
        )
        return report_from_findings(self.name, findings, alpha=alpha, note=note)


@register_detector
@dataclass(frozen=True, kw_only=True)
class OwnerSign(_ImageAudit):
    """Owner audit: weight signs spelling the owner's pixel bytes (sign encoding)."""

    name: ClassVar[str] = "owner-sign"
    by_signs: ClassVar[bool] = True
