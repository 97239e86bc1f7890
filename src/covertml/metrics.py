"""Metrics for accuracy and for how well a secret was recovered.

Images are compared on the 0-255 scale: mean absolute pixel error (MAPE, the paper's
measure), SSIM and PSNR (from scikit-image). Bits are compared by bit error rate; decoded
text by word precision and recall.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of equal entries.

    Example:
        >>> accuracy(np.array([1, 2, 3]), np.array([1, 0, 3]))
        0.6666666666666666
    """
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape:
        raise ValueError(f"shape mismatch: {predicted.shape} vs {labels.shape}")
    return float(np.mean(predicted == labels)) if labels.size else float("nan")


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return a, b


def mape(original: np.ndarray, recovered: np.ndarray) -> float:
    """Mean absolute pixel error on the 0-255 scale (lower is better).

    Example:
        >>> mape(np.array([0, 255]), np.array([10, 250]))
        7.5
    """
    a, b = _pair(original, recovered)
    return float(np.mean(np.abs(a - b)))


def psnr(original: np.ndarray, recovered: np.ndarray, *, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    a, b = _pair(original, recovered)
    if np.array_equal(a, b):
        return float("inf")
    from skimage.metrics import peak_signal_noise_ratio  # scikit-image is slow to import

    return float(peak_signal_noise_ratio(a, b, data_range=data_range))  # type: ignore[no-untyped-call]


def ssim(original: np.ndarray, recovered: np.ndarray, *, data_range: float = 255.0) -> float:
    """Mean structural similarity of grayscale images ``N x H x W`` (or one ``H x W``).

    Uses scikit-image's SSIM (7x7 uniform window, or the largest odd window that fits
    small images such as 8x8 digits).

    Example:
        >>> img = np.arange(64, dtype=np.uint8).reshape(8, 8)
        >>> ssim(img, img)
        1.0
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(original, recovered)
    if a.ndim == 2:
        a, b = a[None], b[None]
    win = min(7, a.shape[-1], a.shape[-2])
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"SSIM needs images of at least 3 x 3 pixels, got {a.shape[-2:]}")
    scores = [
        structural_similarity(x, y, data_range=data_range, win_size=win)  # type: ignore[no-untyped-call]
        for x, y in zip(a, b, strict=True)
    ]
    return float(np.mean(scores))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two flattened arrays.

    Example:
        >>> cosine_similarity(np.array([1.0, 0.0]), np.array([2.0, 0.0]))
        1.0
    """
    x, y = _pair(a, b)
    x, y = x.ravel(), y.ravel()
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / denom) if denom else 0.0


def bit_error_rate(original: np.ndarray, recovered: np.ndarray) -> float:
    """Fraction of differing bits between two ``uint8`` arrays (or two ``bool`` bit arrays).

    Example:
        >>> bit_error_rate(np.array([0b1111_0000], np.uint8), np.array([0b1111_0001], np.uint8))
        0.125
    """
    a, b = np.asarray(original), np.asarray(recovered)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.dtype == np.bool_ and b.dtype == np.bool_:
        return float(np.mean(a != b)) if a.size else 0.0
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(
            f"bit_error_rate needs two uint8 or two bool arrays, got {a.dtype}/{b.dtype}"
        )
    diff = np.unpackbits(np.bitwise_xor(a, b).ravel())
    return float(diff.mean()) if diff.size else 0.0


@dataclass(frozen=True)
class WordScores:
    """Word precision and recall of decoded documents (bag-of-words, micro-averaged)."""

    precision: float
    recall: float
    decoded_words: int
    original_words: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON-able form."""
        return asdict(self)


def word_precision_recall(
    originals: Sequence[Sequence[object]], decoded: Sequence[Sequence[object]]
) -> WordScores:
    """Scores decoded documents against the originals, word by word.

    Per document, the matched words are the multiset intersection of the two bags of words.
    Precision = matched / decoded words, recall = matched / original words, summed over all
    documents (micro average).

    Example:
        >>> s = word_precision_recall([["a", "b", "b"]], [["b", "c"]])
        >>> s.precision, s.recall
        (0.5, 0.3333333333333333)
    """
    if len(originals) != len(decoded):
        raise ValueError(f"{len(originals)} originals but {len(decoded)} decoded documents")
    matched = n_dec = n_orig = 0
    for orig, dec in zip(originals, decoded, strict=True):
        matched += sum((Counter(orig) & Counter(dec)).values())
        n_dec += len(dec)
        n_orig += len(orig)
    return WordScores(
        precision=matched / n_dec if n_dec else 0.0,
        recall=matched / n_orig if n_orig else 0.0,
        decoded_words=n_dec,
        original_words=n_orig,
    )
