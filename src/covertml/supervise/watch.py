"""The guard's watchers: hooks on every model forward, optimizer step and model save.

Installed in the process that runs the untrusted training code, before its own code runs:

* global ``nn.Module`` forward hooks see every call of an outermost module that has
  parameters, made with gradients on and outside a backward pass (training, whatever the
  loop; loss modules and checkpoint recomputation are not inputs). Every image- or
  row-shaped tensor among its arguments, keyword arguments included, is scored by the
  :class:`~covertml.supervise.matcher.InputMatcher`, within a time budget (a share of the
  run's wall time; batches past it are counted, not scored -- the choice never depends on
  their content);
* global optimizer step hooks count steps, keep snapshots of the trained model at doubling
  intervals, and keep a :class:`~covertml.supervise.tamper.Ledger` of exact parameter
  checksums: a change between steps that restores no earlier state is a change made
  outside any optimizer step (LSB rewriting before a save);
* ``torch.save`` and safetensors' writers are wrapped to record every path written.

What it cannot stop is written in docs/GUARD.md.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import safetensors.torch as st
import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.optim import optimizer as optim_hooks

from covertml.supervise.defaults import DEFAULT_BUDGET
from covertml.supervise.matcher import InputMatcher
from covertml.supervise.tamper import Ledger

log = logging.getLogger(__name__)

BUFFER = 256  # inputs scored together
COUNTS = (  # the integer counts of Observations (summary, store and report list them)
    "inputs_seen",
    "inputs_checked",
    "inputs_unmatched",
    "inputs_uncomparable",
    "eval_inputs",
    "forwards",
    "steps",
    "steps_without_forward",
    "hook_errors",
)
MAX_ROOTS = 8  # outermost modules with parameters remembered (besides the pinned one)


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
    hook_errors: int = 0
    scores: list[float] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    tamper: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[tuple[int, dict[str, torch.Tensor]]] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    guard_seconds: float = 0.0
    match_seconds: float = 0.0
    wall_seconds: float = 0.0
    shapes: dict[str, int] = field(default_factory=dict)

    def judge(self, threshold: float) -> None:
        """Counts the checked inputs scoring below ``threshold`` as unmatched.

        The watchers keep every score and the lowest-scoring inputs; the threshold may be
        set after the run (by the guard's parent, which calibrates while the script runs).
        Only kept inputs below the threshold stay as examples.
        """
        self.inputs_unmatched = int(np.sum(np.asarray(self.scores) < threshold))
        self.examples = [e for e in self.examples if e["score"] < threshold]

    def summary(self) -> dict[str, Any]:
        """The counts (no arrays), JSON-able."""
        s = np.asarray(self.scores)
        quantiles = np.quantile(s, [0, 0.01, 0.5]).tolist() if s.size else []
        return {
            **{k: getattr(self, k) for k in COUNTS},
            "score_quantiles": dict(zip(("min", "p01", "p50"), quantiles, strict=False)),
            "input_shapes": dict(self.shapes),
            "guard_seconds": round(self.guard_seconds, 3),
            "match_seconds": round(self.match_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "snapshot_steps": [step for step, _ in self.snapshots],
            "saved": list(self.saved),
            "tamper": list(self.tamper),
            "notes": list(self.notes),
        }


def _tensors(value: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """Tensors in an argument: itself, or inside lists, tuples and dicts (two levels)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif depth < 2 and isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v, depth + 1)
    elif depth < 2 and isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v, depth + 1)


def _plain(x: torch.Tensor) -> bool:
    """A real tensor with data (not meta, not a functorch wrapper, not empty)."""
    if x.is_meta or x.ndim < 2 or x.shape[0] == 0:
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(x)


class Watcher:
    """Installs the hooks and collects :class:`Observations`.

    Args:
        matcher: Scores inputs against the owner's data (``None``: inputs only counted).
        budget: Share of the wall time the input checks may take.
        max_snapshots: Most model snapshots kept (at doubling step intervals).
        snapshot_bytes: Most memory the snapshots may take together.
        examples: Unmatched inputs kept as examples.

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
        budget: float = DEFAULT_BUDGET,
        max_snapshots: int = 16,
        snapshot_bytes: int = 1 << 30,
        examples: int = 16,
    ) -> None:
        self.matcher = matcher
        self.budget = budget
        self.max_snapshots = max_snapshots
        self.snapshot_bytes = snapshot_bytes
        self.n_examples = examples
        self.seen = Observations()
        self.ledger = Ledger()
        self._handles: list[Any] = []
        self._depth = 0
        self._roots: dict[int, nn.Module] = {}  # strong: the script's globals go at its end
        self._pinned: nn.Module | None = None
        self._params: set[int] = set()
        self._interval = 1
        self._start = 0.0
        self._patched: list[tuple[Any, str, Any]] = []
        self._installed = False
        self._buffer: list[tuple[int, torch.Tensor]] = []
        self._buffered = 0
        self._step_comparable = False
        self._step_pending = 0
        self._edits_mid_run = 0
        self._check_eager = _EAGER(self._check)

    # -- installation -------------------------------------------------------------------
    def install(self) -> Watcher:
        """Registers the global hooks and wraps the save functions."""
        self._start = time.perf_counter()
        self._handles = [
            module_hooks.register_module_forward_pre_hook(self._pre_forward),
            module_hooks.register_module_forward_hook(
                self._post_forward, with_kwargs=True, always_call=True
            ),
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
        self._guarded(self._flush)
        self.seen.match_seconds += time.perf_counter() - t
        self._end_step()
        self._check_hooks("at exit")
        self._check_outside("at exit")
        if self.matcher is not None and self.matcher.stats is not None:
            self.seen.judge(self.matcher.stats.threshold)
        model = self._model()
        if model is not None:
            self.seen.snapshots.append((-1, _copy_state(model)))  # -1: the final state
        for handle in self._handles:
            handle.remove()
        for owner, name, original in self._patched:
            setattr(owner, name, original)
        self._patched.clear()
        self._installed = False
        self.seen.tamper = list(self.ledger.changes) + [
            t for t in self.seen.tamper if t["kind"] != "changed-outside-step"
        ]
        self._judge_edits()
        self.seen.notes += self.ledger.notes
        self.seen.guard_seconds += time.perf_counter() - t
        self.seen.wall_seconds = time.perf_counter() - self._start
        return self.seen

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        """Runs a check; a failure inside it is counted, never raised into the script."""
        try:
            fn(*args)
        except Exception as exc:  # the script must not break because the guard did
            self.seen.hook_errors += 1
            log.info("guard check failed: %s", exc)

    def _wrap_saves(self) -> None:
        targets = [(torch, "save"), (st, "save_file"), (st, "save_model")]
        for owner, name in targets:
            original = getattr(owner, name)
            setattr(owner, name, self._saver(original))
            self._patched.append((owner, name, original))

    def _saver(self, original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)
        where = list(signature.parameters)[1]  # torch.save(obj, f), save_file(t, filename)

        def save(*args: Any, **kwargs: Any) -> Any:
            self._check_outside("before saving")
            out = original(*args, **kwargs)
            try:
                path = signature.bind(*args, **kwargs).arguments.get(where)
            except TypeError:
                path = None
            if isinstance(path, (str, os.PathLike)):
                self.seen.saved.append(os.path.abspath(os.fspath(path)))
            return out

        save.__wrapped__ = original  # type: ignore[attr-defined]
        return save

    # -- forwards -----------------------------------------------------------------------
    def _pre_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._depth += 1

    def _post_forward(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        self._depth = max(0, self._depth - 1)
        if torch.compiler.is_compiling():
            return  # being traced by torch.compile: the eager calls are the ones to watch
        if self._depth or torch._C._current_graph_task_id() != -1:
            return  # an inner module, or a recomputation during backward
        if next(module.parameters(), None) is None:
            return  # a loss, a transform: no model
        self.seen.forwards += 1
        self._remember(module)
        tensors = [x for x in _tensors((args, kwargs)) if _plain(x)]
        if not tensors:
            return
        if not torch.is_grad_enabled():
            self.seen.eval_inputs += int(tensors[0].shape[0])
            return
        t = time.perf_counter()
        self._guarded(self._check_eager, tensors)
        spent = time.perf_counter() - t
        self.seen.guard_seconds += spent
        self.seen.match_seconds += spent

    def _remember(self, module: nn.Module) -> None:
        if id(module) in self._roots or module is self._pinned:
            return
        if len(self._roots) >= MAX_ROOTS:
            self._roots.pop(next(iter(self._roots)))
        self._roots[id(module)] = module

    def _check(self, tensors: list[torch.Tensor]) -> None:
        n = int(tensors[0].shape[0])
        self.seen.inputs_seen += n
        for x in tensors[:1]:
            key = "x".join(str(v) for v in x.shape[1:]) + " " + str(x.dtype).split(".")[-1]
            self.seen.shapes[key] = self.seen.shapes.get(key, 0) + n
        if self.matcher is None:
            return
        elapsed = time.perf_counter() - self._start
        if self.seen.match_seconds > self.budget * elapsed and self.seen.inputs_checked > 0:
            return  # over the time budget: counted, not scored
        batches = [b for b in (self.matcher.canonical(x) for x in tensors) if b is not None]
        if not batches:
            self._step_pending += n  # judged at the step: a head on features is no input
            return
        self._step_comparable = True
        for batch in batches:
            self._buffer.append((self.seen.steps, batch.clone()))
            self._buffered += len(batch)
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
        # the lowest-scoring inputs so far are kept (judged against the threshold at the end)
        worst = self.seen.examples[-1]["score"] if self.seen.examples else np.inf
        full = len(self.seen.examples) >= self.n_examples
        low = np.argsort(scores, kind="stable")[: self.n_examples]
        new = [
            {"step": int(steps[i]), "score": float(scores[i]), "input": batch[i].numpy().copy()}
            for i in low
            if not full or scores[i] < worst
        ]
        if new:
            kept = sorted([*self.seen.examples, *new], key=lambda e: e["score"])
            self.seen.examples = kept[: self.n_examples]

    def _end_step(self) -> None:
        """A step whose forwards held no comparable tensor: those inputs were unverifiable."""
        if not self._step_comparable:
            self.seen.inputs_uncomparable += self._step_pending
        self._step_comparable, self._step_pending = False, 0

    # -- optimizer steps ----------------------------------------------------------------
    def _pre_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        t = time.perf_counter()
        self._check_hooks(f"at step {self.seen.steps}")
        before = len(self.ledger.changes)
        self._guarded(lambda: self.ledger.before_step(opt, step=self.seen.steps))
        if len(self.ledger.changes) > before and self.seen.steps:
            self._edits_mid_run += 1
        self.seen.guard_seconds += time.perf_counter() - t

    def _post_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        t = time.perf_counter()
        self.seen.steps += 1
        self._end_step()
        book = self.ledger.books.get(id(opt))
        if book is not None and book.forwards == self.seen.forwards:
            self.seen.steps_without_forward += 1  # checked after the step: LBFGS closures
        self._depth = 0  # a forward that raised cannot leave the count behind
        self._guarded(
            lambda: self.ledger.after_step(opt, step=self.seen.steps, forwards=self.seen.forwards)
        )
        self._params = {id(p) for g in opt.param_groups for p in g["params"]}
        self._pin()
        if self.seen.steps % self._interval == 0:
            self._guarded(self._snapshot)
        self.seen.guard_seconds += time.perf_counter() - t

    def _check_outside(self, when: str) -> None:
        self._guarded(lambda: self.ledger.check(when, step=self.seen.steps))

    def _judge_edits(self) -> None:
        """Marks edits as regular when they follow at least half of the steps.

        A regular transform (weight clipping, max-norm) is reported, and its last edit,
        before the save, is then not held against the run.
        """
        regular = self.seen.steps > 0 and self._edits_mid_run >= 0.5 * self.seen.steps
        for event in self.seen.tamper:
            if event["kind"] == "changed-outside-step":
                event["regular"] = regular

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
    def _pin(self) -> None:
        """Keeps the module that owns the optimizer's parameters (the trained model)."""
        if self._pinned is not None and any(
            id(p) in self._params for p in self._pinned.parameters()
        ):
            return
        roots = list(self._roots.values())
        if roots:
            self._pinned = max(
                roots,
                key=lambda m: (
                    sum(id(p) in self._params for p in m.parameters()),
                    sum(p.numel() for p in m.parameters()),
                ),
            )

    def _model(self) -> nn.Module | None:
        if self._pinned is not None:
            return self._pinned
        return max(
            self._roots.values(), key=lambda m: sum(p.numel() for p in m.parameters()), default=None
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
_EAGER: Callable[[Any], Any] = torch.compiler.disable  # never traced into the matcher


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
