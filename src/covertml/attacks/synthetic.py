"""Synthetic inputs for capacity abuse, regenerated from the key's seed alone.

Images are ``uint8`` ``N x H x W x C`` arrays, the same form as real training images, so
they pass through the same input pipeline (``[0, 1]`` floats, the model's normalization).
Text documents are pseudo-random words from a keyed pool of the vocabulary, turned into
TF-IDF rows exactly as the dataset's vectorizer would (the pool's idf values go into the
key, so the adversary needs no training data to rebuild them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from covertml.errors import ConfigError

ImageGenerator = Callable[[np.random.Generator, int, tuple[int, int, int]], np.ndarray]


def _uniform(rng: np.random.Generator, n: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Every pixel uniform in 0-255."""
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _sparse(rng: np.random.Generator, n: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Black images with a few bright pixels (the paper's near-empty inputs).

    The paper marks two pixels; 5% of the pixels (at least 3) keep the inputs distinct
    even on 8x8 images, where pairs of pixels allow only 2,016 different inputs.
    """
    h, w, c = shape
    k = max(3, (h * w) // 20)
    keys = rng.random((n, h * w))
    # k distinct positions per image: the k smallest keys, in increasing position order
    marked = np.sort(np.argpartition(keys, k, axis=1)[:, :k], axis=1)
    out = np.zeros((n, h * w, c), dtype=np.uint8)
    rows = np.repeat(np.arange(n), k)
    out[rows, marked.reshape(-1)] = rng.integers(128, 256, size=(n * k, c), dtype=np.uint8)
    return out.reshape(n, h, w, c)


IMAGE_GENERATORS: dict[str, ImageGenerator] = {"uniform": _uniform, "sparse": _sparse}


def synthetic_images(kind: str, n: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """``n`` keyed synthetic images of ``shape`` ``(H, W, C)`` from generator ``kind``.

    Example:
        >>> a = synthetic_images("sparse", 4, (8, 8, 1), seed=7)
        >>> a.shape, a.dtype.name, bool((a == synthetic_images("sparse", 4, (8, 8, 1), 7)).all())
        ((4, 8, 8, 1), 'uint8', True)
    """
    if kind not in IMAGE_GENERATORS:
        raise ConfigError(
            f"unknown synthetic image generator {kind!r}",
            fix=f"choose one of: {', '.join(IMAGE_GENERATORS)}",
        )
    rng = np.random.default_rng([seed, 0x5EED])
    return IMAGE_GENERATORS[kind](rng, n, shape)


@dataclass(frozen=True)
class TextPool:
    """The words synthetic documents are drawn from, and how to vectorize them.

    Attributes:
        words: Vocabulary indices (= TF-IDF columns) of the pool.
        idf: Each pool word's idf, as the dataset's vectorizer computed it.
        n_features: Width of a TF-IDF row.
        sublinear_tf: Whether the vectorizer uses ``1 + log(tf)``.
        doc_words: Words per synthetic document.
    """

    words: np.ndarray
    idf: np.ndarray
    n_features: int
    sublinear_tf: bool = False
    doc_words: int = 5

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (stored in the key)."""
        return {
            "words": self.words.tolist(),
            "idf": [float(v) for v in self.idf],
            "n_features": self.n_features,
            "sublinear_tf": self.sublinear_tf,
            "doc_words": self.doc_words,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TextPool:
        """Parses :meth:`to_dict` output."""
        return cls(
            np.asarray(data["words"], dtype=np.int64),
            np.asarray(data["idf"], dtype=np.float64),
            int(data["n_features"]),  # type: ignore[call-overload]
            bool(data["sublinear_tf"]),
            int(data["doc_words"]),  # type: ignore[call-overload]
        )


def document_frequencies(offsets: np.ndarray, tokens: np.ndarray, n_features: int) -> np.ndarray:
    """How many documents contain each token id (vectorized, no loop per document)."""
    doc_of = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    pairs = np.unique(doc_of.astype(np.int64) * n_features + tokens.astype(np.int64))
    return np.bincount(pairs % n_features, minlength=n_features)


def make_text_pool(
    offsets: np.ndarray,
    tokens: np.ndarray,
    *,
    n_features: int,
    pool_size: int,
    seed: int,
    sublinear_tf: bool = False,
    doc_words: int = 5,
) -> TextPool:
    """A keyed pool of words seen in training, with sklearn's smooth idf.

    ``idf = ln((1 + n) / (1 + df)) + 1``, which is what :class:`TfidfVectorizer` computes
    (``smooth_idf=True``) for single words.
    """
    n_docs = offsets.size - 1
    df = document_frequencies(offsets, tokens, n_features)
    seen = np.flatnonzero(df > 0)
    rng = np.random.default_rng([seed, 0x7E47])
    size = min(pool_size, seen.size)
    words = np.sort(rng.choice(seen, size=size, replace=False))
    idf = np.log((1.0 + n_docs) / (1.0 + df[words])) + 1.0
    return TextPool(words, idf, n_features, sublinear_tf, doc_words)


def synthetic_documents(pool: TextPool, n: int, seed: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """``n`` keyed documents: their word ids (``n x doc_words``) and TF-IDF rows (CSR).

    Rows are l2-normalized ``tf * idf``, like the dataset's own features.
    """
    rng = np.random.default_rng([seed, 0xD0C5])
    picks = rng.integers(0, pool.words.size, size=(n, pool.doc_words))
    docs = pool.words[picks]
    x = vectorize(pool, picks)
    return docs, x


def vectorize(pool: TextPool, picks: np.ndarray) -> sp.csr_matrix:
    """TF-IDF rows (l2-normalized) of documents given as ``n x words`` indices into ``pool``.

    Example:
        >>> pool = TextPool(np.array([3, 7]), np.array([1.0, 2.0]), n_features=9)
        >>> x = vectorize(pool, np.array([[0, 0], [0, 1]])).toarray()
        >>> x[:, [3, 7]].astype(np.float64).round(3).tolist()
        [[1.0, 0.0], [0.447, 0.894]]
    """
    n, k = picks.shape
    counts = sp.csr_matrix(
        (np.ones(n * k), (np.repeat(np.arange(n), k), picks.reshape(-1))),
        shape=(n, pool.words.size),
    )
    counts.sum_duplicates()
    tf = 1.0 + np.log(counts.data) if pool.sublinear_tf else counts.data
    values = tf * pool.idf[counts.indices]
    norms = np.sqrt(np.add.reduceat(values**2, counts.indptr[:-1])) if n else values
    values = values / np.repeat(norms, np.diff(counts.indptr))
    x = sp.csr_matrix(
        (values.astype(np.float32), pool.words[counts.indices], counts.indptr),
        shape=(n, pool.n_features),
    )
    x.sort_indices()
    return x
