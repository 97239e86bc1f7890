from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import covertml.data.lfw as lfw
from covertml.data import create_dataset
from covertml.errors import ConfigError, DataFormatError, DataNotFoundError

ARCHIVE = "lfw/lfw_crops_125x94.tar.gz"
# person -> genders of their images ("" = unlabelled)
PEOPLE: dict[str, list[str]] = {
    "AJ_Cook": ["F", "F", "F", "F"],
    "Aaron_Ace": ["M", "M", "M", "M", "M", "M"],
    "Bea_Lone": ["F"],
    "Carl_Zed": ["M", "M", ""],
    "Dora_Nil": [""],
    "Eve_Ann": ["F", "F", "F"],
}


def colour(person: int, number: int) -> tuple[int, int, int]:
    return (30 + 35 * person, 30 + 30 * number, 220 - 35 * person)


def images() -> list[tuple[str, str, str, tuple[int, int, int]]]:
    """(Person/file.jpg, person, gender, colour) of every synthetic image."""
    out = []
    for p, (person, genders) in enumerate(PEOPLE.items()):
        for n, gender in enumerate(genders):
            out.append((f"{person}/{person}_{n + 1:04d}.jpg", person, gender, colour(p, n)))
    return out


@pytest.fixture
def data(tmp_path: Path, tar_writer: Callable[..., Path], jpeg: Callable[..., bytes]) -> Path:
    rows = images()
    tar_writer(
        tmp_path / ARCHIVE,
        {f"lfw_crops/{p}": jpeg(c, (94, 125)) for p, _, _, c in rows},
        dirs=False,
    )
    lines = ["path,person,gender"] + [f"{p},{person},{g}" for p, person, g, _ in rows]
    (tmp_path / "lfw" / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def identify(x: np.ndarray) -> list[tuple[int, int, int]]:
    """Maps each (near-solid) image back to the synthetic colour closest to its mean."""
    known = [c for *_, c in images()]
    out = []
    for img in x:
        mean = img.reshape(-1, img.shape[-1]).mean(axis=0)
        dist = [np.abs(mean - np.array(c)).max() for c in known]
        assert min(dist) < 4
        out.append(known[int(np.argmin(dist))])
    return out


def test_gender_drops_unlabelled_and_splits(data: Path) -> None:
    ds = create_dataset("lfw-gender", data_dir=data)
    labelled = [(c, g) for _, _, g, c in images() if g]
    assert ds.classes == ("female", "male")
    assert ds.train.x.dtype == np.uint8 and ds.train.x.shape[1:] == (62, 47, 3)
    assert len(ds.train) + len(ds.test) == len(labelled) == 16
    assert len(ds.test) == math.ceil(0.2 * 16)
    assert ds.extra["dropped_unlabelled"] == 2
    truth = {c: ("female", "male").index("female" if g == "F" else "male") for c, g in labelled}
    seen = []
    for split in (ds.train, ds.test):
        for c, y in zip(identify(split.x), split.y.tolist(), strict=True):
            assert truth[c] == y
            seen.append(c)
    assert sorted(seen) == sorted(truth)  # every labelled image exactly once
    assert set(ds.test.y.tolist()) == {0, 1}  # stratified: both classes in test
    # deterministic
    again = create_dataset("lfw-gender", data_dir=data, use_cache=False)
    np.testing.assert_array_equal(again.train.x, ds.train.x)


def test_gender_grayscale_and_full_size(data: Path) -> None:
    gray = create_dataset("lfw-gender", data_dir=data, color=False)
    assert gray.train.x.shape[1:] == (62, 47, 1)
    colour_ds = create_dataset("lfw-gender", data_dir=data)
    rgb = colour_ds.train.x[0].reshape(-1, 3).mean(axis=0)
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert abs(gray.train.x[0].mean() - luma) < 2
    full = create_dataset("lfw-gender", data_dir=data, resize=1.0)
    assert full.train.x.shape[1:] == (125, 94, 3)
    quarter = create_dataset("lfw-gender", data_dir=data, resize=0.25)
    assert quarter.train.x.shape[1:] == (int(125 * 0.25), int(94 * 0.25), 3)


def test_identity_min_faces(data: Path) -> None:
    ds = create_dataset("lfw-identity", data_dir=data, min_faces=3)
    counts = {p: len(g) for p, g in PEOPLE.items() if len(g) >= 3}
    assert ds.classes == tuple(sorted(counts)) == ("AJ_Cook", "Aaron_Ace", "Carl_Zed", "Eve_Ann")
    assert len(ds.train) + len(ds.test) == sum(counts.values()) == 16
    person_of = {c: person for _, person, _, c in images()}
    for split in (ds.train, ds.test):
        for c, y in zip(identify(split.x), split.y.tolist(), strict=True):
            assert ds.classes[y] == person_of[c]
    for label, person in enumerate(ds.classes):
        n_test = int((ds.test.y == label).sum())
        assert n_test == max(1, round(0.2 * counts[person]))
        assert int((ds.train.y == label).sum()) == counts[person] - n_test
    two = create_dataset("lfw-identity", data_dir=data, min_faces=6)
    assert two.classes == ("Aaron_Ace",)
    with pytest.raises(ConfigError, match="min_faces"):
        create_dataset("lfw-identity", data_dir=data, min_faces=1)
    with pytest.raises(ConfigError, match="min_faces"):
        create_dataset("lfw-identity", data_dir=data, min_faces=50)


def test_archive_decoded_once_for_both(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    create_dataset("lfw-gender", data_dir=data)

    def fail(*args: object, **kwargs: object) -> dict[str, np.ndarray]:
        raise AssertionError("decoded again")

    monkeypatch.setattr(lfw, "decode_archive", fail)
    ds = create_dataset("lfw-identity", data_dir=data, min_faces=2)
    assert len(ds.train) + len(ds.test) == 16
    ds = create_dataset("lfw-gender", data_dir=data, train_limit=5, test_limit=2)
    assert (len(ds.train), len(ds.test)) == (5, 2)
    with pytest.raises(AssertionError, match="decoded again"):
        create_dataset("lfw-gender", data_dir=data, color=False)  # other options: new decode


def test_missing_files(tmp_path: Path, data: Path) -> None:
    with pytest.raises(DataNotFoundError, match=ARCHIVE):
        create_dataset("lfw-identity", data_dir=tmp_path / "nowhere")
    (data / "lfw" / "labels.csv").unlink()
    with pytest.raises(DataNotFoundError, match=r"lfw/labels\.csv"):
        create_dataset("lfw-gender", data_dir=data)


def test_corrupt_archive(data: Path) -> None:
    path = data / ARCHIVE
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataFormatError, match="copy it again") as info:
        create_dataset("lfw-gender", data_dir=data)
    assert str(path) in str(info.value)


def test_bad_resize(data: Path) -> None:
    with pytest.raises(ConfigError, match="resize"):
        create_dataset("lfw-gender", data_dir=data, resize=0.0)
