"""Checkpoints of any format, read lazily, and written back in the layout they came in.

Example:
    >>> import tempfile, pathlib, torch
    >>> from safetensors.torch import save_file
    >>> from covertml.models.checkpoint import open_checkpoint
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.safetensors"
    >>> save_file({"w": torch.zeros(2, 2, dtype=torch.bfloat16)}, p)
    >>> open_checkpoint(p).infos["w"].dtype
    'bfloat16'
"""

from covertml.models.checkpoint.base import (
    Checkpoint,
    TensorInfo,
    describe,
    dtype_name,
    info_of,
    read_range,
)
from covertml.models.checkpoint.open import find_checkpoints, open_checkpoint
from covertml.models.checkpoint.write import Transform, WriteResult, write_like

__all__ = [
    "Checkpoint",
    "TensorInfo",
    "Transform",
    "WriteResult",
    "describe",
    "dtype_name",
    "find_checkpoints",
    "info_of",
    "open_checkpoint",
    "read_range",
    "write_like",
]
