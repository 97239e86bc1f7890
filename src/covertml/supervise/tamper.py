"""Did the parameters change outside an optimizer step?

After every step of every optimizer the ledger records an exact checksum of each of its
parameter tensors (the sum of the tensor's words as integers, computed on the tensor's
device, one host transfer per check); before the next step, before a save and at exit it
compares. Any rewritten bit changes a word and so the sum (barring a deliberate
compensating change in another word of the same tensor). A change is not tampering when it
restores a state seen before (the initial weights, the best epoch's), when the tensors only
changed dtype (``model.half()`` before saving), or when the optimizer's parameter set
changed (``add_param_group``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def checksum(params: list[torch.Tensor]) -> torch.Tensor:
    """Per-tensor sums of the tensors' words as integers (int64, on the CPU)."""
    if not params:
        return torch.zeros(0, dtype=torch.int64)
    sums = [p.detach().view(_INT[p.element_size()]).sum(dtype=torch.int64) for p in params]
    if len({s.device for s in sums}) > 1:  # a model split over devices
        return torch.stack([s.cpu() for s in sums])
    return torch.stack(sums).cpu()  # one transfer


def _digest(sums: torch.Tensor) -> bytes:
    return hashlib.blake2b(sums.numpy().tobytes(), digest_size=16).digest()


@dataclass
class _Book:
    ids: tuple[int, ...]
    dtypes: tuple[torch.dtype, ...]
    last: torch.Tensor
    forwards: int = 0


@dataclass
class Ledger:
    """Checksums per optimizer, and the changes seen between steps.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(4))
        >>> opt = torch.optim.SGD([w], lr=0.1)
        >>> book = Ledger()
        >>> book.before_step(opt, step=0)
        >>> w.grad = torch.ones(4); opt.step(); book.after_step(opt, step=1)
        >>> with torch.no_grad():
        ...     _ = w.mul_(2.0)
        >>> book.check("before saving", step=1)
        >>> [e["when"] for e in book.changes]
        ['before saving']
    """

    books: dict[int, _Book] = field(default_factory=dict)
    params: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    known: set[bytes] = field(default_factory=set)
    changes: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)

    def _params(self, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
        return [p for g in opt.param_groups for p in g["params"]]

    def before_step(self, opt: torch.optim.Optimizer, *, step: int) -> None:
        """Compares with the state after this optimizer's last step (or records the first)."""
        if id(opt) not in self.books:  # the state before any step: restoring it is honest
            params = self._params(opt)
            self.known.add(_digest(checksum(params)))
            self.params[id(opt)] = params
            return
        self._compare(id(opt), f"before step {step + 1}", step)

    def after_step(self, opt: torch.optim.Optimizer, *, step: int, forwards: int = 0) -> None:
        """Records the checksums after a step."""
        params = self._params(opt)
        sums = checksum(params)
        self.known.add(_digest(sums))
        self.params[id(opt)] = params
        self.books[id(opt)] = _Book(
            tuple(id(p) for p in params), tuple(p.dtype for p in params), sums, forwards
        )

    def check(self, when: str, *, step: int) -> None:
        """Compares every optimizer's parameters with their state after its last step."""
        for key in list(self.books):
            self._compare(key, when, step)

    def _compare(self, key: int, when: str, step: int) -> None:
        book, params = self.books[key], self.params[key]
        if tuple(id(p) for p in params) != book.ids:
            return  # the parameter set changed (add_param_group): nothing to compare
        if tuple(p.dtype for p in params) != book.dtypes:
            self.notes.append({"kind": "dtype-changed", "step": step, "when": when})
            return
        now = checksum(params)
        if torch.equal(now, book.last):
            return
        digest = _digest(now)
        if digest not in self.known:
            self.changes.append(
                {
                    "kind": "changed-outside-step",
                    "step": step,
                    "when": when,
                    "tensors_changed": int((now != book.last).sum()),
                    "tensors": int(now.numel()),
                }
            )
            self.known.add(digest)
        book.last = now
