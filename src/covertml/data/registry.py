"""The dataset registry: :func:`create_dataset`, :func:`list_datasets`, :func:`register_dataset`.

A loader is a function ``loader(*, root: Path, use_cache: bool, **options) -> Dataset``
that returns the *full* dataset; :func:`create_dataset` then applies ``train_limit`` /
``test_limit``. Loaders of generic formats (``npz:PATH``, ``imagefolder:PATH``) are
registered with ``takes_path=True`` and receive ``path`` instead of ``root``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from covertml.data.base import Dataset, Modality, subset_indices
from covertml.errors import ConfigError, DataNotFoundError
from covertml.paths import data_dir as resolve_data_dir
from covertml.registry import Registry

DATASETS: Registry[Dataset] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    modality: Modality,
    help: str,
    archive: str | None = None,
    default_model: str = "mlp",
    takes_path: bool = False,
    aliases: tuple[str, ...] = (),
    **meta: Any,
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Registers a dataset loader.

    Args:
        name: Registry name (``covertml train --dataset NAME``).
        modality: ``"image"`` or ``"text"``.
        help: One-line description for ``covertml datasets``.
        archive: Archive path relative to the data directory, or ``None`` if embedded.
        default_model: Model the CLI uses when ``--model`` is not given.
        takes_path: The name is a scheme used as ``name:PATH``.
        aliases: Other accepted names.
        **meta: Extra facts shown by ``covertml datasets`` (e.g. expected sizes).
    """
    return DATASETS.register(
        name,
        help=help,
        aliases=aliases,
        modality=modality,
        archive=archive,
        default_model=default_model,
        takes_path=takes_path,
        **meta,
    )


def list_datasets() -> list[str]:
    """Names of the registered datasets (generic formats appear as ``npz:PATH`` etc.).

    Example:
        >>> from covertml.data import list_datasets  # the loaders registered
        >>> "digits" in list_datasets()
        True
    """
    return [f"{e.name}:PATH" if e.meta.get("takes_path") else e.name for e in DATASETS]


def archive_path(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Where dataset ``name`` expects its archive, or ``None`` for embedded/generic ones."""
    entry = DATASETS.get(name)
    rel = entry.meta.get("archive")
    return None if rel is None else resolve_data_dir(data_dir) / rel


def require_archive(name: str, root: Path) -> Path:
    """Returns the archive of ``name`` under ``root`` or raises a helpful error."""
    rel: str = DATASETS.get(name).meta["archive"]
    path = root / rel
    if not path.is_file():
        raise DataNotFoundError(
            f"dataset {name!r} needs {rel!r} but {path} does not exist",
            fix=f"point --data-dir or COVERTML_DATA at the folder that contains {rel!r}",
        )
    return path


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset's files are present, for ``covertml datasets``."""

    name: str
    modality: str
    found: bool
    location: str
    help: str
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "name": self.name,
            "modality": self.modality,
            "found": self.found,
            "location": self.location,
            "help": self.help,
            **self.meta,
        }


def dataset_status(data_dir: str | os.PathLike[str] | None = None) -> list[DatasetStatus]:
    """One :class:`DatasetStatus` per registered dataset."""
    out = []
    for entry in DATASETS:
        meta = {k: v for k, v in entry.meta.items() if k in {"n_train", "n_test", "classes"}}
        if entry.meta.get("takes_path"):
            found, where = True, f"{entry.name}:PATH (your own files)"
        elif entry.meta.get("archive") is None:
            found, where = True, "embedded"
        else:
            path = archive_path(entry.name, data_dir)
            assert path is not None
            found, where = path.is_file(), str(path)
        name = f"{entry.name}:PATH" if entry.meta.get("takes_path") else entry.name
        out.append(DatasetStatus(name, entry.meta["modality"], found, where, entry.help, meta))
    return out


def _check_options(name: str, factory: Callable[..., Dataset], options: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    known = [
        p
        for p, spec in params.items()
        if spec.kind is spec.KEYWORD_ONLY and p not in {"root", "path", "use_cache"}
    ]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"dataset {name!r} has no option {unknown[0]!r}",
            fix=f"its options are: {', '.join(known) or 'none'}",
        )


def check_dataset(name: str, **options: Any) -> None:
    """Fails as :func:`create_dataset` would on a bad name, path form or option; loads nothing.

    Example:
        >>> from covertml.data import check_dataset  # the loaders registered
        >>> check_dataset("digits")
        >>> check_dataset("digit")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        covertml.errors.UnknownNameError: unknown dataset 'digit' (did you mean 'digits'?)...
    """
    scheme, _, path = name.partition(":")
    entry = DATASETS.get(scheme)
    common = ("data_dir", "train_limit", "test_limit", "seed", "use_cache")
    loader = {k: v for k, v in options.items() if k not in common}
    _check_options(entry.name, entry.factory, loader)
    if entry.meta.get("takes_path") and not path:
        raise ConfigError(f"dataset {scheme!r} needs a path", fix=f"write it as '{scheme}:PATH'")
    if not entry.meta.get("takes_path") and path:
        raise ConfigError(f"dataset {scheme!r} takes no path", fix=f"write just {scheme!r}")


def create_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    use_cache: bool = True,
    **options: Any,
) -> Dataset:
    """Loads dataset ``name`` with train/test splits, class names and modality.

    Args:
        name: A registered name (see :func:`list_datasets`), or ``npz:PATH`` /
            ``imagefolder:PATH`` for your own data.
        data_dir: Folder holding the offline archives; defaults to ``$COVERTML_DATA``.
        train_limit: Keep a seeded random subset of this many training rows (original order).
        test_limit: Same for the test split.
        seed: Seed of the subsets.
        use_cache: Read/write the decoded-array cache.
        **options: Loader options (e.g. ``max_features`` for text, ``min_faces`` for LFW).

    Returns:
        The :class:`~covertml.data.base.Dataset`.

    Example:
        >>> from covertml.data import create_dataset  # the loaders registered
        >>> ds = create_dataset("digits", train_limit=100)
        >>> ds.modality, len(ds.train), ds.num_classes, ds.input_shape
        ('image', 100, 10, (1, 8, 8))
    """
    check_dataset(name, **options)
    scheme, _, path = name.partition(":")
    entry = DATASETS.get(scheme)
    if entry.meta.get("takes_path"):
        full = entry.factory(path=Path(path).expanduser(), use_cache=use_cache, **options)
    else:
        root = resolve_data_dir(data_dir)
        full = entry.factory(root=root, use_cache=use_cache, **options)
    if train_limit is None and test_limit is None:
        return full
    train_idx = subset_indices(len(full.train), train_limit, seed=seed)
    test_idx = subset_indices(len(full.test), test_limit, seed=seed + 1)
    return Dataset(
        name=full.name,
        modality=full.modality,
        classes=full.classes,
        train=full.train.take(train_idx),
        test=full.test.take(test_idx),
        vocabulary=full.vocabulary,
        source=full.source,
        extra=full.extra,
    )
