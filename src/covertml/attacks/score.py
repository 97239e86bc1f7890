"""Scoring a recovered secret against the true one (the data owner's or researcher's view)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from covertml import metrics
from covertml.attacks.base import symbols_to_bits
from covertml.attacks.secrets import Secret


@dataclass(frozen=True)
class RecoveryScores:
    """How much of the secret came back.

    Attributes:
        items: Items (images or documents) compared.
        symbols: Symbols (pixels or tokens) compared.
        exact_symbols: Fraction of symbols recovered exactly.
        bit_error_rate: Fraction of wrong bits over all symbols.
        mape: Mean absolute pixel error, 0-255 (images).
        ssim: Mean SSIM (images).
        psnr: PSNR in dB (images; ``inf`` when exact).
        word_precision: Decoded words that are in the original document (text).
        word_recall: Original words that were decoded (text).
    """

    items: int
    symbols: int
    exact_symbols: float
    bit_error_rate: float
    mape: float | None = None
    ssim: float | None = None
    psnr: float | None = None
    word_precision: float | None = None
    word_recall: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-able form."""
        return asdict(self)


def score_recovery(original: Secret, recovered: Secret) -> RecoveryScores:
    """Compares ``recovered`` with ``original`` item by item.

    Example:
        >>> s = Secret("image", np.array([0, 255, 10, 20]), 256, (2, 2))
        >>> score_recovery(s, s.with_values(np.array([0, 255, 10, 24]))).mape
        1.0
    """
    if original.spec() != recovered.spec():
        raise ValueError("the recovered secret has another shape than the original")
    bps = original.bits_per_symbol
    a, b = original.values, recovered.values
    ber = float(np.mean(symbols_to_bits(a, bps) != symbols_to_bits(b, bps))) if a.size else 0.0
    common = RecoveryScores(
        items=original.count,
        symbols=int(a.size),
        exact_symbols=float(np.mean(a == b)) if a.size else 1.0,
        bit_error_rate=ber,
    )
    if original.kind == "image":
        x, y = original.images(), recovered.images()
        ssim = metrics.ssim(x, y) if min(x.shape[1:]) >= 3 else None
        return replace(common, mape=metrics.mape(x, y), ssim=ssim, psnr=metrics.psnr(x, y))
    words = metrics.word_precision_recall(
        [d.tolist() for d in original.documents()], [d.tolist() for d in recovered.documents()]
    )
    return replace(common, word_precision=words.precision, word_recall=words.recall)
