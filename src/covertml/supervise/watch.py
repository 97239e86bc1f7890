"""The guard's watchers: hooks on every model forward, optimizer step and model save.

Installed in the process that runs the untrusted training code, before its own code runs:

* a global ``nn.Module`` forward pre-hook sees every batch entering an outermost module
  while gradients are on (training); the :class:`~covertml.supervise.matcher.InputMatcher`
  scores its inputs, within a time budget (a share of the run's wall time; batches past
  it are counted, not scored -- the choice never depends on their content);
* global optimizer step hooks count steps, keep snapshots of the trained model at doubling
  intervals, and compare a fingerprint of the parameters (a fixed sample of values per
  tensor) before each step with the one after the previous step: a change in between that
  restores no earlier state is a change made outside any optimizer step (LSB rewriting);
* ``torch.save`` and safetensors' writers are wrapped to record every path written.

What it cannot stop is written in docs/GUARD.md: code in the same process can remove the
hooks (which the watcher notices at its next step, and at exit) or train without
``nn.Module`` (steps with no forward seen are counted).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optim_hooks

from covertml.supervise.matcher import InputMatcher

log = logging.getLogger(__name__)

FINGERPRINT_VALUES = 64  # values sampled per parameter tensor
BUFFER = 256  # inputs scored together
MAX_ROOTS = 8  # outermost modules remembered (the trained model is among them)


@dataclass
class Observations:
    """Everything the watchers saw (mutable while they run)."""

    inputs_seen: int = 0
    inputs_checked: int = 0
    inputs_unmatched: int = 0
    inputs_uncomparable: int = 0
    eval_inputs: int = 0
    forwards: int = 0
    steps: int = 0
    steps_without_forward: int = 0
    scores: list[float] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    tamper: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[tuple[int, dict[str, torch.Tensor]]] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    guard_seconds: float = 0.0
    wall_seconds: float = 0.0
    shapes: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The counts (no arrays), JSON-able."""
        s = np.asarray(self.scores)
        return {
            "inputs_seen": self.inputs_seen,
            "inputs_checked": self.inputs_checked,
            "inputs_unmatched": self.inputs_unmatched,
            "inputs_uncomparable": self.inputs_uncomparable,
            "eval_inputs": self.eval_inputs,
            "forwards": self.forwards,
            "steps": self.steps,
            "steps_without_forward": self.steps_without_forward,
            "score_quantiles": (
                dict(
                    zip(("min", "p01", "p50"), np.quantile(s, [0, 0.01, 0.5]).tolist(), strict=True)
                )
                if s.size
                else {}
            ),
            "input_shapes": dict(self.shapes),
            "guard_seconds": round(self.guard_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "snapshot_steps": [step for step, _ in self.snapshots],
            "saved": list(self.saved),
            "tamper": list(self.tamper),
        }


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


class Watcher:
    """Installs the hooks and collects :class:`Observations`.

    Args:
        matcher: Scores inputs against the owner's data (``None``: inputs only counted).
        budget: Share of the wall time the input checks may take.
        max_snapshots: Most model snapshots kept (at doubling step intervals).
        snapshot_bytes: Most memory the snapshots may take together.
        examples: Unmatched inputs kept as examples.
        seed: Seed of the fingerprint's sampled positions.

    Example:
        >>> w = Watcher(None).install()
        >>> model = nn.Linear(4, 2)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> model(torch.randn(3, 4)).sum().backward(); opt.step()
        >>> with torch.no_grad():
        ...     _ = model.weight.add_(1.0)  # a change outside any optimizer step
        >>> w.uninstall().steps, [t["kind"] for t in w.seen.tamper]
        (1, ['changed-outside-step'])
    """

    def __init__(
        self,
        matcher: InputMatcher | None,
        *,
        budget: float = 0.2,
        max_snapshots: int = 16,
        snapshot_bytes: int = 1 << 30,
        examples: int = 16,
        seed: int = 0,
    ) -> None:
        self.matcher = matcher
        self.budget = budget
        self.max_snapshots = max_snapshots
        self.snapshot_bytes = snapshot_bytes
        self.n_examples = examples
        self.rng = np.random.default_rng([seed, 0x6A7D])
        self.seen = Observations()
        self._handles: list[Any] = []
        self._depth = 0
        self._forwards_at_step = 0
        self._roots: dict[int, nn.Module] = {}  # strong: the script's globals go at its end
        self._positions: dict[int, torch.Tensor] = {}
        self._last: torch.Tensor | None = None
        self._known: set[bytes] = set()
        self._interval = 1
        self._start = 0.0
        self._patched: list[tuple[Any, str, Any]] = []
        self._installed = False
        self._buffer: list[tuple[int, torch.Tensor]] = []
        self._buffered = 0

    # -- installation -------------------------------------------------------------------
    def install(self) -> Watcher:
        """Registers the global hooks and wraps the save functions."""
        self._start = time.perf_counter()
        self._handles = [
            module_hooks.register_module_forward_pre_hook(self._pre_forward),
            module_hooks.register_module_forward_hook(self._post_forward, always_call=True),
            optim_hooks.register_optimizer_step_pre_hook(self._pre_step),
            optim_hooks.register_optimizer_step_post_hook(self._post_step),
        ]
        self._wrap_saves()
        self._installed = True
        return self

    def uninstall(self) -> Observations:
        """Final checks (hooks still there, parameters since the last step), then unhooks."""
        if not self._installed:
            return self.seen
        t = time.perf_counter()
        self._flush()
        self.seen.guard_seconds += time.perf_counter() - t
        self._check_hooks("at exit")
        self._check_outside("at exit")
        model = self._model()
        if model is not None:
            self.seen.snapshots.append((-1, _copy_state(model)))  # -1: the final state
        for handle in self._handles:
            handle.remove()
        for owner, name, original in self._patched:
            setattr(owner, name, original)
        self._patched.clear()
        self._installed = False
        self.seen.wall_seconds = time.perf_counter() - self._start
        return self.seen

    @property
    def steps(self) -> int:
        """Optimizer steps seen."""
        return self.seen.steps

    def _wrap_saves(self) -> None:
        targets: list[tuple[Any, str]] = [(torch, "save")]
        try:
            import safetensors.torch as st

            targets += [(st, "save_file"), (st, "save_model")]
        except ImportError:  # pragma: no cover - safetensors is a dependency
            pass
        for owner, name in targets:
            original = getattr(owner, name)
            setattr(owner, name, self._saver(original))
            self._patched.append((owner, name, original))

    def _saver(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def save(obj: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
            self._check_outside("before saving")
            out = original(obj, path, *args, **kwargs)
            if isinstance(path, (str, os.PathLike)):
                self.seen.saved.append(os.path.abspath(os.fspath(path)))
            return out

        save.__wrapped__ = original  # type: ignore[attr-defined]
        return save

    # -- forwards -----------------------------------------------------------------------
    def _pre_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        depth, self._depth = self._depth, self._depth + 1
        if depth:
            return
        self.seen.forwards += 1
        if id(module) not in self._roots:
            if len(self._roots) >= MAX_ROOTS:
                self._roots.pop(next(iter(self._roots)))
            self._roots[id(module)] = module
        x = _first_tensor(args, {})
        if x is None or x.ndim == 0:
            return
        if not (torch.is_grad_enabled() and module.training):
            self.seen.eval_inputs += int(x.shape[0])
            return
        t = time.perf_counter()
        try:
            self._check(x)
        finally:
            self.seen.guard_seconds += time.perf_counter() - t

    def _post_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        self._depth = max(0, self._depth - 1)

    def _check(self, x: torch.Tensor) -> None:
        n = int(x.shape[0])
        self.seen.inputs_seen += n
        key = "x".join(str(v) for v in x.shape[1:]) + f" {str(x.dtype).removeprefix('torch.')}"
        self.seen.shapes[key] = self.seen.shapes.get(key, 0) + n
        if self.matcher is None:
            return
        elapsed = time.perf_counter() - self._start
        if self.seen.guard_seconds > self.budget * elapsed and self.seen.inputs_checked > 0:
            return  # over the time budget: counted, not scored
        batch = self.matcher.canonical(x)
        if batch is None:
            self.seen.inputs_uncomparable += n
            return
        self._buffer.append((self.seen.steps, batch.clone()))
        self._buffered += n
        if self._buffered >= BUFFER:
            self._flush()

    def _flush(self) -> None:
        """Scores the buffered inputs together (one call amortizes the matcher's overhead)."""
        if not self._buffer or self.matcher is None:
            return
        steps = np.concatenate([np.full(len(b), s) for s, b in self._buffer])
        batch = torch.cat([b for _, b in self._buffer])
        self._buffer, self._buffered = [], 0
        scores = self.matcher.score_canonical(batch)
        self.seen.inputs_checked += len(batch)
        self.seen.scores.extend(scores.tolist())
        bad = np.flatnonzero(scores < self.matcher.stats.threshold)
        self.seen.inputs_unmatched += int(bad.size)
        room = self.n_examples - len(self.seen.examples)
        for i in bad[: max(room, 0)]:
            self.seen.examples.append(
                {"step": int(steps[i]), "score": float(scores[i]), "input": batch[i].numpy()}
            )

    # -- optimizer steps ----------------------------------------------------------------
    def _pre_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        t = time.perf_counter()
        if self.seen.forwards == self._forwards_at_step:
            self.seen.steps_without_forward += 1
        self._check_hooks(f"at step {self.seen.steps}")
        self._check_outside(f"before step {self.seen.steps + 1}", opt)
        self.seen.guard_seconds += time.perf_counter() - t

    def _post_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        t = time.perf_counter()
        self.seen.steps += 1
        self._forwards_at_step = self.seen.forwards
        self._depth = 0  # a forward that raised cannot leave the count behind
        self._params = [p for g in opt.param_groups for p in g["params"]]
        self._last = self._fingerprint(self._params)
        self._known.add(self._last.numpy().tobytes())
        if self.seen.steps % self._interval == 0:
            self._snapshot()
        self.seen.guard_seconds += time.perf_counter() - t

    def _fingerprint(self, params: list[torch.Tensor]) -> torch.Tensor:
        parts = []
        for p in params:
            pos = self._positions.get(id(p))
            if pos is None or (pos.numel() and int(pos.max()) >= p.numel()):
                count = min(FINGERPRINT_VALUES, p.numel())
                pos = torch.from_numpy(self.rng.choice(p.numel(), size=count, replace=False))
                self._positions[id(p)] = pos
            parts.append(p.detach().reshape(-1)[pos.to(p.device)].float().cpu())
        return torch.cat(parts) if parts else torch.zeros(0)

    def _check_outside(self, when: str, opt: torch.optim.Optimizer | None = None) -> None:
        if self._last is None:
            return
        params = [p for g in opt.param_groups for p in g["params"]] if opt else self._params
        now = self._fingerprint(params)
        if now.shape == self._last.shape and torch.equal(now, self._last):
            return
        if now.numpy().tobytes() in self._known:
            return  # an earlier state restored (e.g. the best epoch's weights)
        changed = int((now != self._last).sum()) if now.shape == self._last.shape else now.numel()
        self.seen.tamper.append(
            {
                "kind": "changed-outside-step",
                "step": self.seen.steps,
                "when": when,
                "sampled_values_changed": changed,
                "sampled_values": int(now.numel()),
            }
        )
        self._last = now
        self._known.add(now.numpy().tobytes())

    def _check_hooks(self, when: str) -> None:
        if any(t["kind"] == "hooks-removed" for t in self.seen.tamper):
            return
        present = [
            self._handles[0].id in module_hooks._global_forward_pre_hooks,
            self._handles[1].id in module_hooks._global_forward_hooks,
            self._handles[2].id in optim_hooks._global_optimizer_pre_hooks,
            self._handles[3].id in optim_hooks._global_optimizer_post_hooks,
        ]
        if not all(present) or nn.Module.__call__ is not _MODULE_CALL:
            self.seen.tamper.append(
                {"kind": "hooks-removed", "step": self.seen.steps, "when": when}
            )

    # -- snapshots ----------------------------------------------------------------------
    def _model(self) -> nn.Module | None:
        roots = list(self._roots.values())
        if not roots:
            return None
        ids = {id(p) for p in getattr(self, "_params", [])}
        return max(
            roots,
            key=lambda m: (
                sum(id(p) in ids for p in m.parameters()),
                sum(p.numel() for p in m.parameters()),
            ),
        )

    def _snapshot(self) -> None:
        model = self._model()
        if model is None:
            return
        size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        keep = max(2, min(self.max_snapshots, self.snapshot_bytes // max(size, 1)))
        self.seen.snapshots.append((self.seen.steps, _copy_state(model)))
        if len(self.seen.snapshots) >= keep:  # thin to every other one, double the interval
            self.seen.snapshots = self.seen.snapshots[1::2]
            self._interval *= 2


_MODULE_CALL = nn.Module.__call__


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
