"""Where an attacker may have put the secret: carrier streams and the windows searched.

The attacker's training code picks its carriers: the weights of one tensor from any offset,
or the concatenation of consecutive tensors, in file order, name order or the model's
parameter order, with or without the one-dimensional tensors (biases, norm scales). Each
such choice is a *stream*; a *window* is a stretch of a stream that starts at the
beginning of a tensor (where attackers start) or, inside tensors larger than a window, at
regular intervals. Windows with the same content under several orders are searched once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from covertml.models.checkpoint import describe, read_range


@dataclass(frozen=True, eq=False)
class Window:
    """A stretch of carrier values to search.

    Attributes:
        label: Where it is, for a person: ``"order: tensor[offset] ..."``.
        values: The values, ``float32``.
        start_tensor: The tensor it starts in.
        offset: Its offset inside ``start_tensor``.
    """

    label: str
    values: np.ndarray
    start_tensor: str
    offset: int


def carrier_orders(
    tensors: Mapping[str, torch.Tensor], model: nn.Module | None = None
) -> dict[str, list[str]]:
    """The distinct tensor orders an attacker may have used, by name.

    File order is the order of ``tensors`` (as stored); name order sorts the names; the
    parameter order is the model's ``named_parameters()`` when it could be rebuilt. Each
    comes with and without the one-dimensional tensors.

    Example:
        >>> t = {"b.weight": torch.ones(2, 2), "a.bias": torch.ones(2)}
        >>> carrier_orders(t)
        {'file order': ['b.weight', 'a.bias'], 'file order, 2-D and up': ['b.weight'], \
'name order': ['a.bias', 'b.weight']}
    """
    infos = describe(tensors)
    floats = [k for k, i in infos.items() if i.is_floating_point and i.numel > 0]
    bases = {"file order": floats, "name order": sorted(floats)}
    if model is not None:
        names = [n for n, _ in model.named_parameters() if n in tensors]
        names += [k for k in floats if k not in set(names)]
        bases["parameter order"] = names
    out: dict[str, list[str]] = {}
    seen: set[tuple[str, ...]] = set()
    for label, names in bases.items():
        for suffix, keep in (
            ("", names),
            (", 2-D and up", [k for k in names if infos[k].ndim >= 2]),
        ):
            key = tuple(keep)
            if keep and key not in seen:
                seen.add(key)
                out[label + suffix] = list(keep)
    return out


def windows(
    tensors: Mapping[str, torch.Tensor],
    *,
    model: nn.Module | None,
    length: int,
    max_windows: int,
) -> list[Window]:
    """Windows of ``length`` values to search, at most ``max_windows``, most likely first.

    Priority: the start of each stream, then the start of each tensor (2-D and up first,
    in stream order), then evenly spaced interior windows of large tensors. Windows are
    keyed by their content (start tensor, offset, the tensors they span), so one stretch
    shared by several orders is searched once. Only the values of the windows are read
    (from a lazy checkpoint, only those bytes).

    Example:
        >>> t = {"w": torch.arange(10.0).reshape(2, 5), "v": torch.zeros(3, 3)}
        >>> [(w.start_tensor, w.offset, w.values.size) for w in windows(
        ...     t, model=None, length=12, max_windows=8)]
        [('w', 0, 12), ('v', 0, 12), ('v', 0, 9), ('w', 0, 10)]
    """
    orders = carrier_orders(tensors, model)
    infos = describe(tensors)
    candidates: list[tuple[int, str, list[str], int]] = []  # (priority, order, names, offset)
    for order, names in orders.items():
        for i, name in enumerate(names):
            tier = 0 if i == 0 else (1 if infos[name].ndim >= 2 else 2)
            candidates.append((tier, order, names[i:], 0))
            size = infos[name].numel
            for offset in range(length, size - length // 2, length):
                candidates.append((3, order, names[i:], offset))
    candidates.sort(key=lambda c: c[0])
    out: list[Window] = []
    seen: set[tuple[str, ...]] = set()
    for _, order, names, offset in candidates:
        parts, spanned, need = [], [], length
        for j, name in enumerate(names):
            start = offset if j == 0 else 0
            take = max(0, min(need, infos[name].numel - start))
            parts.append((name, start, take))
            spanned.append(name)
            need -= take
            if need == 0:
                break
        key = (str(offset), *spanned)
        if key in seen or length - need < 2:
            continue
        values = np.concatenate([read_range(tensors, n, a, c).float().numpy() for n, a, c in parts])
        seen.add(key)
        more = f" .. {spanned[-1]}" if len(spanned) > 1 else ""
        label = f"{order}: {spanned[0]}[{offset}:]{more}"
        out.append(Window(label, values.astype(np.float32, copy=False), spanned[0], offset))
        if len(out) >= max_windows:
            break
    return out
