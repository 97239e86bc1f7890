"""Raw readers of the offline text archives (no feature extraction here).

* 20 Newsgroups "bydate" (``20news-bydate/20news-bydate.tar.gz``):
  ``20news-bydate-{train,test}/<group>/<id>``, latin-1. Classes are the 20 group names
  sorted; each split is ordered by (group, numeric id), i.e. scikit-learn's ``load_files``
  order (it sorts ids as strings, which only differs for ids of different lengths) before
  ``fetch_20newsgroups`` would shuffle it.
* IMDB large movie reviews (``imdb/aclImdb_labelled.tar.gz``):
  ``aclImdb/{train,val,test}/{pos,neg}/<id>_<rating>.txt``, UTF-8. ``val/`` belongs to the
  official training split and is merged into it (25,000 / 25,000). Classes ``("neg", "pos")``;
  each split is ordered by (id, class): ``neg/0, pos/0, neg/1, pos/1, ...``, so any prefix
  is balanced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covertml.data.archive import iter_tar_files
from covertml.errors import DataFormatError

_NEWS = re.compile(r"^20news-bydate-(train|test)/([^/]+)/(\d+)$")
_IMDB = re.compile(r"^aclImdb/(train|val|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
IMDB_CLASSES: tuple[str, ...] = ("neg", "pos")


@dataclass(frozen=True)
class RawSplit:
    """Texts of one split with their class indices."""

    texts: list[str]
    labels: np.ndarray


@dataclass(frozen=True)
class RawCorpus:
    """A text corpus before feature extraction."""

    classes: tuple[str, ...]
    train: RawSplit
    test: RawSplit


def _decode(data: bytes, encoding: str, where: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{where} is not valid {encoding} ({exc})", fix="copy the original archive again"
        ) from exc


def _split(rows: list[tuple[tuple[int, int], str, int]], path: Path, name: str) -> RawSplit:
    if not rows:
        raise DataFormatError(
            f"{path} has no documents in its {name} split", fix="copy the original archive again"
        )
    rows.sort(key=lambda row: row[0])
    return RawSplit([text for _, text, _ in rows], np.array([y for *_, y in rows], np.int64))


def read_20news(path: Path) -> RawCorpus:
    """Reads the 20 Newsgroups "bydate" archive in one pass.

    Raises:
        DataFormatError: The archive is damaged, or its splits have different groups.
    """
    found: dict[str, list[tuple[str, int, str]]] = {"train": [], "test": []}
    for name, data in iter_tar_files(path):
        match = _NEWS.match(name)
        if match is None:
            continue
        split, group, doc_id = match.group(1), match.group(2), int(match.group(3))
        found[split].append((group, doc_id, _decode(data, "latin-1", f"{path}:{name}")))
    groups = sorted({g for g, _, _ in found["train"]})
    unknown = sorted({g for g, _, _ in found["test"]} - set(groups))
    if unknown:
        raise DataFormatError(
            f"{path}: test groups {unknown} do not occur in the training split",
            fix="copy the original 20news-bydate.tar.gz again",
        )
    index = {g: i for i, g in enumerate(groups)}
    splits = {
        split: _split([((index[g], i), t, index[g]) for g, i, t in rows], path, split)
        for split, rows in found.items()
    }
    return RawCorpus(tuple(groups), splits["train"], splits["test"])


def read_imdb(path: Path) -> RawCorpus:
    """Reads the labelled IMDB archive in one pass, merging ``val/`` into the training split.

    Raises:
        DataFormatError: The archive is damaged or holds invalid UTF-8.
    """
    found: dict[str, list[tuple[tuple[int, int], str, int]]] = {"train": [], "test": []}
    for name, data in iter_tar_files(path):
        match = _IMDB.match(name)
        if match is None:
            continue
        split = "test" if match.group(1) == "test" else "train"
        label = IMDB_CLASSES.index(match.group(2))
        text = _decode(data, "utf-8", f"{path}:{name}")
        found[split].append(((int(match.group(3)), label), text, label))
    return RawCorpus(
        IMDB_CLASSES, _split(found["train"], path, "train"), _split(found["test"], path, "test")
    )
