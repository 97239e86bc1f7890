r"""Experiment grids described in TOML, expanded into independent cells.

A grid file names what to cross: datasets (with training overrides), attacks with lists
of settings, sanitizers with lists of settings, and seeds. Every combination is a
:class:`Cell` with a stable id, so a runner can record each cell as it finishes and skip
the finished ones after an interruption.

Example file::

    name = "digits-cpu"
    seeds = [0]
    scan = true          # scan each released model (against an honest reference, seed + 1000)
    oracle = "local"     # capacity abuse queries: "local" model or "http" (a loopback API)
    device = "auto"      # auto (CUDA when present), cpu, cuda, cuda:N, mps; per dataset too
    amp = false          # bf16 autocast on the device

    [datasets.digits]
    epochs = 30

    [attacks]
    honest = [{}]
    lsb = [{bits = 8}, {bits = 16}]

    [sanitizers]
    none = [{}]
    lsb-randomize = [{bits = 16}]

    [resources.digits]   # what each job of a dataset asks of a Ray cluster (--engine ray)
    cpus = 2
    gpus = 0

Honest training is always part of a grid (it is every attack's baseline), first.

Example:
    >>> grid = parse_grid('name = "g"\n[datasets.digits]\n[attacks]\nlsb = [{bits = 8}]')
    >>> [c.id for c in grid.cells()]
    ['digits/honest/none/seed0', 'digits/lsb-bits=8/none/seed0']
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covertml.errors import ConfigError

TRAIN_KEYS = {
    "epochs", "lr", "optimizer", "weight_decay", "schedule", "batch_size",
    "train_limit", "test_limit", "model", "device", "amp",
}  # fmt: skip
TOP_KEYS = {
    "name", "seeds", "scan", "oracle", "datasets", "attacks", "sanitizers", "device", "amp",
    "resources",
}  # fmt: skip
RESOURCE_KEYS = ("cpus", "gpus")


def _label(name: str, options: dict[str, Any]) -> str:
    return name + "".join(f"-{k}={v}" for k, v in sorted(options.items()))


@dataclass(frozen=True)
class Cell:
    """One experiment: a dataset, an attack (or honest training), a sanitizer and a seed."""

    dataset: str
    train: dict[str, Any]
    attack: str
    attack_options: dict[str, Any]
    sanitizer: str
    sanitizer_options: dict[str, Any]
    seed: int

    @property
    def id(self) -> str:
        """Stable identifier (also the cell's record name)."""
        return "/".join(
            [
                self.dataset,
                _label(self.attack, self.attack_options),
                _label(self.sanitizer, self.sanitizer_options),
                f"seed{self.seed}",
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, with the id."""
        return {
            "id": self.id,
            "dataset": self.dataset,
            "train": dict(self.train),
            "attack": self.attack,
            "attack_options": dict(self.attack_options),
            "sanitizer": self.sanitizer,
            "sanitizer_options": dict(self.sanitizer_options),
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Grid:
    """A parsed grid file."""

    name: str
    datasets: dict[str, dict[str, Any]]
    attacks: dict[str, list[dict[str, Any]]]
    sanitizers: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"none": [{}]})
    seeds: tuple[int, ...] = (0,)
    scan: bool = False
    oracle: str = "local"
    resources: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "name": self.name,
            "datasets": self.datasets,
            "attacks": self.attacks,
            "sanitizers": self.sanitizers,
            "seeds": list(self.seeds),
            "scan": self.scan,
            "oracle": self.oracle,
            "resources": self.resources,
        }

    def cells(self) -> list[Cell]:
        """Every combination, datasets outermost, in file order."""
        out = []
        for (ds, train), (attack, a_opts), (san, s_opts), seed in itertools.product(
            self.datasets.items(),
            [(a, o) for a, opts in self.attacks.items() for o in opts],
            [(s, o) for s, opts in self.sanitizers.items() for o in opts],
            self.seeds,
        ):
            out.append(Cell(ds, train, attack, a_opts, san, s_opts, seed))
        return out


def _options_lists(raw: Any, what: str) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"[{what}] must name at least one entry", fix=f"e.g. [{what}] none = [{{}}]"
        )
    out: dict[str, list[dict[str, Any]]] = {}
    for name, settings in raw.items():
        if isinstance(settings, dict):
            settings = [settings]
        if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
            raise ConfigError(
                f"[{what}] {name} must be a list of option tables",
                fix=f"{name} = [{{}}] or {name} = [{{key = 1}}, {{key = 2}}]",
            )
        out[str(name)] = [dict(s) for s in settings] or [{}]
    return out


def _check_names(grid: Grid) -> None:
    from covertml.attacks import create_attack
    from covertml.data.registry import DATASETS
    from covertml.defenses import create_sanitizer

    for ds in grid.datasets:
        DATASETS.get(ds.partition(":")[0])
    for name, opts in grid.attacks.items():
        for o in opts:
            if name != "honest":
                create_attack(name, **o)
    for name, opts in grid.sanitizers.items():
        for o in opts:
            if name != "none":
                create_sanitizer(name, **o)


def _resources(raw: Any, datasets: dict[str, Any], source: str) -> dict[str, dict[str, float]]:
    """``[resources.DATASET]`` tables: the CPUs and GPUs one job of that dataset needs."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: resources must be tables", fix="[resources.cifar10] gpus = 1")
    out: dict[str, dict[str, float]] = {}
    for name, table in raw.items():
        if name not in datasets:
            raise ConfigError(
                f"{source}: [resources.{name}] names no dataset of the grid",
                fix=f"use one of: {', '.join(datasets)}",
            )
        if not isinstance(table, dict) or set(table) - set(RESOURCE_KEYS):
            raise ConfigError(
                f"{source}: [resources.{name}] may hold only cpus and gpus",
                fix=f"[resources.{name}] cpus = 4, gpus = 1",
            )
        for key, value in table.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(
                    f"{source}: [resources.{name}] {key} must be a number >= 0, not {value!r}",
                    fix=f"{key} = 1",
                )
        if table.get("cpus", 1) == 0 and table.get("gpus", 0) == 0:
            raise ConfigError(
                f"{source}: [resources.{name}] asks for nothing (a job needs a CPU or a GPU)",
                fix="cpus = 1",
            )
        out[str(name)] = {k: float(v) for k, v in table.items()}
    return out


def parse_grid(text: str, *, source: str = "<grid>") -> Grid:
    """Parses and validates a grid from TOML text (names and options are checked)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML ({exc})", fix="check the file") from None
    datasets = raw.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(f"{source} names no [datasets.NAME] table", fix="add [datasets.digits]")
    for name, train in datasets.items():
        unknown = sorted(set(train) - TRAIN_KEYS)
        if unknown:
            raise ConfigError(
                f"{source}: [datasets.{name}] has unknown key {unknown[0]!r}",
                fix=f"use: {', '.join(sorted(TRAIN_KEYS))}",
            )
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise ConfigError(f"{source}: seeds must be a list of integers", fix="seeds = [0, 1]")
    unknown_top = sorted(set(raw) - TOP_KEYS)
    if unknown_top:
        raise ConfigError(
            f"{source} has unknown key {unknown_top[0]!r}",
            fix=f"use: {', '.join(sorted(TOP_KEYS))}",
        )
    if not isinstance(raw.get("scan", False), bool):
        raise ConfigError(f"{source}: scan must be true or false", fix="scan = true")
    oracle = raw.get("oracle", "local")
    if oracle not in ("local", "http"):
        raise ConfigError(f'{source}: oracle must be "local" or "http"', fix='oracle = "http"')
    attacks = _options_lists(raw.get("attacks", {"honest": [{}]}), "attacks")
    attacks = {"honest": [{}], **{k: v for k, v in attacks.items() if k != "honest"}}
    common: dict[str, Any] = {k: raw[k] for k in ("device", "amp") if k in raw}
    for where, table in [("", common)] + [(f" [datasets.{k}]", v) for k, v in datasets.items()]:
        if "device" in table and not isinstance(table["device"], str):
            raise ConfigError(f"{source}:{where} device must be a string", fix='device = "cuda"')
        if "amp" in table and not isinstance(table["amp"], bool):
            raise ConfigError(f"{source}:{where} amp must be true or false", fix="amp = true")
    grid = Grid(
        name=str(raw.get("name", Path(source).stem)),
        datasets={str(k): {**common, **dict(v)} for k, v in datasets.items()},
        attacks=attacks,
        sanitizers=_options_lists(raw.get("sanitizers", {"none": [{}]}), "sanitizers"),
        seeds=tuple(seeds),
        scan=bool(raw.get("scan", False)),
        oracle=str(oracle),
        resources=_resources(raw.get("resources", {}), datasets, source),
    )
    _check_names(grid)
    return grid


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Reads and validates a grid file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"grid file {p} does not exist", fix="check the --config path")
    return parse_grid(p.read_text(encoding="utf-8"), source=str(p))


def on_device(grid: Grid, device: str | None = None, *, amp: bool | None = None) -> Grid:
    r"""``grid`` with every dataset trained on ``device`` (and with ``amp``), when given.

    The device is not part of any id: a run resumed on another device reuses what is done.

    Example:
        >>> g = on_device(parse_grid('[datasets.digits]'), "cpu", amp=True)
        >>> g.datasets["digits"], [c.id for c in g.cells()]
        ({'device': 'cpu', 'amp': True}, ['digits/honest/none/seed0'])
    """
    given = {k: v for k, v in (("device", device), ("amp", amp)) if v is not None}
    if not given:
        return grid
    datasets = {name: {**train, **given} for name, train in grid.datasets.items()}
    return dataclasses.replace(grid, datasets=datasets)
