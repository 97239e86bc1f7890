"""Which torch device a command runs on: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

``auto`` (the default everywhere) picks the first CUDA device when there is one, else Apple's
``mps``, else the CPU. Asking for a device this machine lacks is a clear error, never a
silent fall-back to the CPU: a paper-scale grid that trains on 2 cores instead of a GPU
would take a day before anyone noticed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from covertml.errors import ConfigError

DEVICES = "auto, cpu, cuda, cuda:N, mps"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device named by ``spec``, checked to exist on this machine.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("auto").type in ("cpu", "cuda", "mps")
        True
        >>> resolve_device("tpu")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        covertml.errors.ConfigError: unknown device 'tpu' -- choose one of: auto, cpu, ...
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = (spec or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind == "cpu" and not index:
        return torch.device("cpu")
    if kind == "mps" and not index:
        if not _mps_available():
            raise ConfigError(
                "device 'mps' is not available on this machine (no Apple GPU, or a torch "
                "build without MPS)",
                fix="use --device auto or --device cpu",
            )
        return torch.device("mps")
    if kind == "cuda" and (not index or index.isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} is not available: torch sees no CUDA GPU (a CPU build of "
                f"torch {torch.__version__}, or no driver)",
                fix="use --device auto or --device cpu, or install a CUDA build of torch",
            )
        n = torch.cuda.device_count()
        if index and int(index) >= n:
            raise ConfigError(
                f"device {name!r} does not exist: this machine has {n} CUDA device(s)",
                fix=f"use cuda:0 to cuda:{n - 1}",
            )
        return torch.device("cuda", int(index) if index else torch.cuda.current_device())
    raise ConfigError(f"unknown device {spec!r}", fix=f"choose one of: {DEVICES}")


def is_accelerator(device: torch.device) -> bool:
    """Whether ``device`` is a GPU (where data is kept on the device and batches stay there)."""
    return device.type in ("cuda", "mps")


def describe_device(device: torch.device) -> str:
    """``device`` as recorded in ``metrics.json``: ``cpu``, or ``cuda:0 (NVIDIA H100)``.

    Example:
        >>> describe_device(torch.device("cpu"))
        'cpu'
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def model_on(model: nn.Module, device: str | torch.device | None) -> nn.Module:
    """``model`` itself when it is on ``device`` already (or ``device`` is None), else a copy.

    The copy is moved to ``device``; the caller's model stays where it is.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> model_on(m, "cpu") is m, model_on(m, None) is m
        (True, True)
    """
    if device is None:
        return model
    target = resolve_device(device)
    first = next(model.parameters(), None)
    here = first.device if first is not None else torch.device("cpu")
    if here == target:
        return model
    return copy.deepcopy(model).to(target)
