from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

import covertml.data.textcorpora as textcorpora
from covertml.data import create_dataset
from covertml.errors import ConfigError, DataFormatError, DataNotFoundError

NEWS = "20news-bydate/20news-bydate.tar.gz"
IMDB = "imdb/aclImdb_labelled.tar.gz"

# (split, group, id, text); ids 9 < 10 < 100 numerically but not as strings
NEWS_DOCS = [
    ("train", "sci.space", 100, "Rockets go to orbit. Orbit is high!"),
    ("train", "sci.space", 9, "The moon and the stars, café au lait"),
    ("train", "alt.atheism", 10, "Gods and myths; myths and gods."),
    ("train", "alt.atheism", 9, "Reason over dogma, reason wins"),
    ("train", "comp.graphics", 12, "Pixels, polygons and shaders: GPU rendering"),
    ("test", "sci.space", 5, "orbit of the moon unknownword"),
    ("test", "alt.atheism", 7, "dogma and gods zzzunseen"),
    ("test", "comp.graphics", 1, "rendering pixels fast"),
]
# (folder, class, id, rating, text)
IMDB_DOCS = [
    ("train", "neg", 0, 1, "Awful film.<br />Boring plot"),
    ("train", "pos", 1, 9, "Wonderful acting, great plot"),
    ("train", "neg", 2, 3, "Dull and slow, naïve script"),
    ("train", "pos", 3, 10, "A masterpiece of cinema"),
    ("val", "neg", 1, 2, "Terrible ending, boring"),
    ("val", "pos", 0, 8, "Great fun, great cast"),
    ("test", "neg", 0, 4, "boring and dull film"),
    ("test", "pos", 0, 7, "great acting unseenword"),
    ("test", "pos", 1, 10, "wonderful cinema"),
]


def words(text: str) -> list[str]:
    return re.findall(r"(?u)\b\w\w+\b", text.lower())


@pytest.fixture
def news(tmp_path: Path, tar_writer: Callable[..., Path]) -> Path:
    files = {f"20news-bydate-{s}/{g}/{i}": t.encode("latin-1") for s, g, i, t in NEWS_DOCS}
    tar_writer(tmp_path / NEWS, files)
    return tmp_path


@pytest.fixture
def imdb(tmp_path: Path, tar_writer: Callable[..., Path]) -> Path:
    files = {"aclImdb/README": b"readme", "aclImdb/imdb.vocab": b"the\nand\n"}
    files |= {f"aclImdb/{f}/{c}/{i}_{r}.txt": t.encode("utf-8") for f, c, i, r, t in IMDB_DOCS}
    tar_writer(tmp_path / IMDB, files)
    return tmp_path


def news_expected(split: str) -> tuple[list[str], list[int]]:
    groups = sorted({g for s, g, _, _ in NEWS_DOCS if s == "train"})
    rows = sorted((groups.index(g), i, t) for s, g, i, t in NEWS_DOCS if s == split)
    return [t for _, _, t in rows], [g for g, _, _ in rows]


def check_documents(ds_split: object, texts: list[str], vocabulary: tuple[str, ...]) -> None:
    docs = ds_split.documents  # type: ignore[attr-defined]
    assert docs is not None and docs.tokens.dtype == np.int32 and len(docs) == len(texts)
    vocab = set(vocabulary)
    for i, text in enumerate(texts):
        assert [vocabulary[j] for j in docs[i]] == [w for w in words(text) if w in vocab]


def test_20news_features_order_and_documents(news: Path) -> None:
    ds = create_dataset("20news", data_dir=news)
    assert ds.modality == "text"
    assert ds.classes == ("alt.atheism", "comp.graphics", "sci.space")
    train_texts, train_y = news_expected("train")
    test_texts, test_y = news_expected("test")
    assert ds.train.y.tolist() == train_y and ds.test.y.tolist() == test_y
    assert train_texts[0] == "Reason over dogma, reason wins"  # alt.atheism/9 before /10
    ref = TfidfVectorizer().fit(train_texts)
    assert ds.vocabulary == tuple(ref.get_feature_names_out())
    assert ds.input_shape == (len(ref.vocabulary_),)
    assert ds.train.x.dtype == np.float32 and ds.train.x.format == "csr"
    np.testing.assert_allclose(
        ds.train.x.toarray(), ref.transform(train_texts).toarray(), rtol=1e-5
    )
    np.testing.assert_allclose(ds.test.x.toarray(), ref.transform(test_texts).toarray(), rtol=1e-5)
    check_documents(ds.train, train_texts, ds.vocabulary)
    check_documents(ds.test, test_texts, ds.vocabulary)
    assert "café" in ds.vocabulary  # latin-1 decoded
    assert "unknownword" not in ds.vocabulary  # test-only words are dropped
    assert len(ds.test.documents[0]) == len(words(test_texts[0])) - 1  # type: ignore[index]


def test_20news_options(news: Path) -> None:
    train_texts, _ = news_expected("train")
    small = create_dataset("20news", data_dir=news, max_features=5)
    ref = TfidfVectorizer(max_features=5).fit(train_texts)
    assert small.vocabulary == tuple(ref.get_feature_names_out()) and small.input_shape == (5,)
    check_documents(small.train, train_texts, small.vocabulary)
    bigrams = create_dataset("20news", data_dir=news, ngram_range=(1, 2), sublinear_tf=True)
    ref2 = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(train_texts)
    assert bigrams.vocabulary == tuple(ref2.get_feature_names_out())
    assert "the moon" in bigrams.vocabulary
    np.testing.assert_allclose(
        bigrams.train.x.toarray(), ref2.transform(train_texts).toarray(), rtol=1e-5
    )
    check_documents(bigrams.train, train_texts, bigrams.vocabulary)  # unigram sequences only
    with pytest.raises(ConfigError, match="max_features"):
        create_dataset("20news", data_dir=news, max_features=0)
    with pytest.raises(ConfigError, match="ngram_range"):
        create_dataset("20news", data_dir=news, ngram_range=(2, 1))


def test_imdb_merges_val_into_train(imdb: Path) -> None:
    ds = create_dataset("imdb", data_dir=imdb)
    assert ds.classes == ("neg", "pos")
    train = sorted((i, ("neg", "pos").index(c), t) for f, c, i, _, t in IMDB_DOCS if f != "test")
    test = sorted((i, ("neg", "pos").index(c), t) for f, c, i, _, t in IMDB_DOCS if f == "test")
    assert len(ds.train) == 6 and len(ds.test) == 3
    assert ds.train.y.tolist() == [y for _, y, _ in train] == [0, 1, 0, 1, 0, 1]
    assert ds.test.y.tolist() == [y for _, y, _ in test]
    check_documents(ds.train, [t for *_, t in train], ds.vocabulary)  # type: ignore[misc]
    check_documents(ds.test, [t for *_, t in test], ds.vocabulary)  # type: ignore[misc]
    assert "naïve" in ds.vocabulary and "br" in ds.vocabulary  # UTF-8, <br /> kept
    assert "terrible" in ds.vocabulary  # from val/
    assert "unseenword" not in ds.vocabulary


def test_text_cache_and_limits(imdb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = create_dataset("imdb", data_dir=imdb)

    def fail(path: Path) -> object:
        raise AssertionError("parsed again")

    monkeypatch.setattr(textcorpora, "read_imdb", fail)
    second = create_dataset("imdb", data_dir=imdb)
    assert second.vocabulary == first.vocabulary
    np.testing.assert_array_equal(second.train.documents.tokens, first.train.documents.tokens)  # type: ignore[union-attr]
    assert (second.train.x != first.train.x).nnz == 0
    limited = create_dataset("imdb", data_dir=imdb, train_limit=4, test_limit=2)
    assert (len(limited.train), len(limited.test), limited.train.x.shape[0]) == (4, 2, 4)
    assert limited.train.documents is not None and len(limited.train.documents) == 4
    with pytest.raises(AssertionError, match="parsed again"):
        create_dataset("imdb", data_dir=imdb, max_features=3)  # new options: parsed again


def test_missing_and_corrupt(tmp_path: Path, news: Path) -> None:
    with pytest.raises(DataNotFoundError, match=IMDB):
        create_dataset("imdb", data_dir=tmp_path / "empty")
    path = news / NEWS
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataFormatError, match="copy it again"):
        create_dataset("20news", data_dir=news)
