"""Text datasets (``20news``, ``imdb``): TF-IDF features plus token-index sequences.

Features are scikit-learn's :class:`~sklearn.feature_extraction.text.TfidfVectorizer` fit on
the training split only (default settings unless options say otherwise, so 20 Newsgroups
gives 130,107 features) and applied to the test split, stored as ``float32`` CSR.

Every document is also kept as its sequence of vocabulary indices (:class:`Documents`, the
secret of the text attacks): the vectorizer's own preprocessor (lower-casing) and tokenizer
(``token_pattern``) split the text into *unigrams*, even when ``ngram_range`` adds longer
n-grams to the features, and each token becomes its column in the vocabulary. Tokens outside
the vocabulary (test-only words, words cut by ``max_features``) are dropped from the sequence.
The vocabulary is ``get_feature_names_out()``: index = feature column = token id.

Raw parsing (:mod:`covertml.data.textcorpora`) is separate from vectorizing; the result of
both is cached under a key of the archive fingerprint and the vectorizer options, so a second
load reads the arrays back in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from covertml.data import textcorpora
from covertml.data.base import Dataset, Documents, Split
from covertml.data.cache import (
    cached_arrays,
    csr_from_arrays,
    csr_to_arrays,
    file_fingerprint,
    strings_from_array,
    strings_to_array,
)
from covertml.data.registry import register_dataset, require_archive
from covertml.errors import ConfigError

_FORMAT_VERSION = 1


def vectorizer_options(
    max_features: int | None, ngram_range: tuple[int, int] | list[int], sublinear_tf: bool
) -> dict[str, Any]:
    """Validated :class:`TfidfVectorizer` keyword arguments (also the cache key).

    Example:
        >>> vectorizer_options(None, [1, 2], False)
        {'max_features': None, 'ngram_range': (1, 2), 'sublinear_tf': False}
    """
    if max_features is not None and (
        isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 1
    ):
        raise ConfigError(
            f"max_features must be a positive integer or None, got {max_features!r}",
            fix="use e.g. max_features=20000",
        )
    values = [v for v in ngram_range if isinstance(v, int) and not isinstance(v, bool)]
    if len(values) != 2 or len(ngram_range) != 2 or not 1 <= values[0] <= values[1]:
        raise ConfigError(
            f"ngram_range must be (min_n, max_n) with 1 <= min_n <= max_n, got {ngram_range!r}",
            fix="use e.g. ngram_range=(1, 2)",
        )
    return {
        "max_features": max_features,
        "ngram_range": (values[0], values[1]),
        "sublinear_tf": bool(sublinear_tf),
    }


def token_sequences(
    texts: list[str], split_words: Callable[[str], list[str]], vocabulary: dict[str, int]
) -> Documents:
    """Each text as its vocabulary indices; out-of-vocabulary tokens are dropped."""
    lengths = np.zeros(len(texts), dtype=np.int64)
    chunks: list[np.ndarray] = []
    for i, text in enumerate(texts):
        ids = [j for j in map(vocabulary.get, split_words(text)) if j is not None]
        lengths[i] = len(ids)
        chunks.append(np.array(ids, dtype=np.int32))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return Documents(tokens.astype(np.int32, copy=False), offsets)


def vectorize(corpus: textcorpora.RawCorpus, options: dict[str, Any]) -> dict[str, np.ndarray]:
    """TF-IDF (fit on train), token sequences and vocabulary, as arrays for the cache."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(dtype=np.float32, **options)
    x_train = sp.csr_matrix(vec.fit_transform(corpus.train.texts), dtype=np.float32)
    x_test = sp.csr_matrix(vec.transform(corpus.test.texts), dtype=np.float32)
    preprocess, tokenize = vec.build_preprocessor(), vec.build_tokenizer()

    def split_words(text: str) -> list[str]:
        return list(tokenize(preprocess(text)))

    vocabulary: dict[str, int] = {str(k): int(v) for k, v in vec.vocabulary_.items()}
    arrays: dict[str, np.ndarray] = {
        **csr_to_arrays("x_train", x_train),
        **csr_to_arrays("x_test", x_test),
        "y_train": corpus.train.labels,
        "y_test": corpus.test.labels,
        "vocabulary": strings_to_array([str(w) for w in vec.get_feature_names_out()]),
        "classes": strings_to_array(list(corpus.classes)),
    }
    for split, texts in (("train", corpus.train.texts), ("test", corpus.test.texts)):
        docs = token_sequences(texts, split_words, vocabulary)
        arrays[f"tokens_{split}"], arrays[f"offsets_{split}"] = docs.tokens, docs.offsets
    return arrays


def _load_text(
    name: str,
    root: Path,
    reader: Callable[[Path], textcorpora.RawCorpus],
    *,
    use_cache: bool,
    options: dict[str, Any],
) -> Dataset:
    path = require_archive(name, root)
    key = {"archive": file_fingerprint(path), "tfidf": options, "format": _FORMAT_VERSION}
    arrays = cached_arrays(name, key, lambda: vectorize(reader(path), options), use_cache=use_cache)

    def split(which: str) -> Split:
        docs = Documents(arrays[f"tokens_{which}"], arrays[f"offsets_{which}"])
        y = arrays[f"y_{which}"].astype(np.int64, copy=False)
        return Split(csr_from_arrays(f"x_{which}", arrays), y, docs)

    return Dataset(
        name=name,
        modality="text",
        classes=strings_from_array(arrays["classes"]),
        train=split("train"),
        test=split("test"),
        vocabulary=strings_from_array(arrays["vocabulary"]),
        source=str(path),
        extra={"tfidf": options},
    )


@register_dataset(
    "20news",
    modality="text",
    help="20 Newsgroups (bydate) topic classification, TF-IDF over 130,107 words",
    archive="20news-bydate/20news-bydate.tar.gz",
    default_model="logreg",
    aliases=("20newsgroups",),
    n_train=11314,
    n_test=7532,
    classes=20,
)
def load_20news(
    *,
    root: Path,
    use_cache: bool = True,
    max_features: int | None = None,
    ngram_range: tuple[int, int] = (1, 1),
    sublinear_tf: bool = False,
) -> Dataset:
    """20 Newsgroups "bydate": 11,314 / 7,532 messages, 20 groups (sorted names).

    Args:
        root: The data directory holding ``20news-bydate/20news-bydate.tar.gz``.
        use_cache: Read/write the cache of features and token sequences.
        max_features: Keep only the most frequent terms (``None``: all 130,107).
        ngram_range: Word n-gram lengths of the features (token sequences stay unigrams).
        sublinear_tf: Use ``1 + log(tf)``.
    """
    options = vectorizer_options(max_features, ngram_range, sublinear_tf)
    return _load_text("20news", root, textcorpora.read_20news, use_cache=use_cache, options=options)


@register_dataset(
    "imdb",
    modality="text",
    help="IMDB movie reviews, sentiment (neg/pos), train+val merged into 25,000 / 25,000",
    archive="imdb/aclImdb_labelled.tar.gz",
    default_model="logreg",
    n_train=25000,
    n_test=25000,
    classes=2,
)
def load_imdb(
    *,
    root: Path,
    use_cache: bool = True,
    max_features: int | None = None,
    ngram_range: tuple[int, int] = (1, 1),
    sublinear_tf: bool = False,
) -> Dataset:
    """IMDB large movie reviews: 25,000 / 25,000 reviews, classes ``("neg", "pos")``.

    Args:
        root: The data directory holding ``imdb/aclImdb_labelled.tar.gz``.
        use_cache: Read/write the cache of features and token sequences.
        max_features: Keep only the most frequent terms (``None``: the whole vocabulary).
        ngram_range: Word n-gram lengths of the features (token sequences stay unigrams).
        sublinear_tf: Use ``1 + log(tf)``.
    """
    options = vectorizer_options(max_features, ngram_range, sublinear_tf)
    return _load_text("imdb", root, textcorpora.read_imdb, use_cache=use_cache, options=options)
