"""Datasets: a registry of loaders returning train/test splits, class names and modality.

Example:
    >>> from covertml.data import create_dataset
    >>> ds = create_dataset("digits")
    >>> ds.train.x.dtype, ds.train.x.shape[1:]
    (dtype('uint8'), (8, 8, 1))
"""

from covertml.data import cifar10, digits, generic, lfw, text  # noqa: F401  (registers loaders)
from covertml.data.base import Dataset, Documents, Split, images_to_float
from covertml.data.registry import (
    DATASETS,
    archive_path,
    check_dataset,
    create_dataset,
    dataset_status,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "Documents",
    "Split",
    "archive_path",
    "check_dataset",
    "create_dataset",
    "dataset_status",
    "images_to_float",
    "list_datasets",
    "register_dataset",
]
