"""Grid files: expansion into cells, stable ids, and one-line errors for bad files."""

from __future__ import annotations

import pytest

from covertml.errors import ConfigError, UnknownNameError
from covertml.runner import load_grid, parse_grid

GRID = """
name = "small"
seeds = [0, 1]

[datasets.digits]
epochs = 5

[attacks]
honest = [{}]
lsb = [{bits = 8}, {bits = 16}]
capacity = {ratio = 1.0}

[sanitizers]
none = [{}]
lsb-randomize = [{bits = 16}]
"""


def test_every_combination_is_one_cell_with_a_unique_stable_id() -> None:
    cells = parse_grid(GRID).cells()
    # 1 dataset x (1 + 2 + 1) attack settings x 2 sanitizer settings x 2 seeds
    assert len(cells) == 1 * 4 * 2 * 2
    ids = [c.id for c in cells]
    assert len(set(ids)) == len(ids)
    assert "digits/lsb-bits=16/lsb-randomize-bits=16/seed1" in ids
    assert ids == [c.id for c in parse_grid(GRID).cells()]  # same file, same ids, same order
    assert cells[0].train == {"epochs": 5} and cells[0].to_dict()["id"] == ids[0]


def test_defaults_are_honest_training_without_sanitizer(tmp_path) -> None:
    path = tmp_path / "g.toml"
    path.write_text("[datasets.digits]\n")
    grid = load_grid(path)
    assert grid.name == "g"
    assert [c.id for c in grid.cells()] == ["digits/honest/none/seed0"]


@pytest.mark.parametrize(
    ("text", "error", "needle"),
    [
        ("[datasets.digits", ConfigError, "not valid TOML"),
        ("name = 'x'", ConfigError, "no [datasets.NAME]"),
        ("[datasets.digits]\nepochz = 3", ConfigError, "unknown key 'epochz'"),
        ("seeds = 'all'\n[datasets.digits]", ConfigError, "seeds must be a list"),
        ("[datasets.digits]\n[attacks]\nlsb = 3", ConfigError, "list of option tables"),
        ("[datasets.digits]\n[attacks]\nlsb = [{bitz = 3}]", ConfigError, "no option 'bitz'"),
        ("[datasets.digitz]", UnknownNameError, "digits"),
        ("[datasets.digits]\n[sanitizers]\nfp17 = [{}]", UnknownNameError, "fp16"),
    ],
)
def test_bad_grids_name_the_problem(text, error, needle) -> None:
    with pytest.raises(error) as info:
        parse_grid(text)
    assert needle in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_grid(tmp_path / "nope.toml")


def test_every_shipped_configuration_is_a_valid_grid() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.glob("*/*.toml"))
    assert {f.parent.name for f in files} == {"cpu", "paper"}
    datasets = set()
    for f in files:
        grid = load_grid(f)
        assert grid.cells(), f
        datasets |= {(f.parent.name, d.partition(":")[0]) for d in grid.datasets}
    # the five datasets on CPU (and LFW identity, never tuned on), the paper's four on a GPU
    assert {d for kind, d in datasets if kind == "cpu"} == {
        "digits", "cifar10", "lfw-gender", "lfw-identity", "20news", "imdb",
    }  # fmt: skip
    assert {d for kind, d in datasets if kind == "paper"} == {
        "cifar10",
        "lfw-gender",
        "20news",
        "imdb",
    }
    paper = load_grid(root / "paper" / "cifar10.toml")
    assert paper.datasets["cifar10"] == {"model": "resnet32", "epochs": 100, "device": "auto"}
    # the image grids ask a Ray cluster for one GPU per job, the text grids for CPUs only
    assert paper.resources["cifar10"] == {"cpus": 4.0, "gpus": 1.0}
    assert load_grid(root / "paper" / "imdb.toml").resources["imdb"]["gpus"] == 0.0
