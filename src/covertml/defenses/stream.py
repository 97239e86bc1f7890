"""Streaming tensors through a sanitizer chunk by chunk, and counting what it changed.

:class:`Tally` counts changed values (a value changed iff its bit pattern did) and sums the
absolute changes. :class:`WordStream` is the transform :func:`~covertml.defenses.files.
sanitize_file` hands to the checkpoint writer for low-bit sanitizers: each chunk is copied
into a buffer reused for every chunk, rewritten in place as words, and tallied against the
chunk it came from, so that sanitizing a model of any size allocates a few chunk-sized
buffers once and touches each value a handful of times.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch

from covertml.floats import BFLOAT16, FLOAT16, FloatFormat, float_format, require_format
from covertml.models.checkpoint import TensorInfo
from covertml.models.checkpoint.background import PENDING

STAT_CHUNK = 1 << 22  # values per float64 slice in the generic tally
PART = 1 << 21  # values per part of a chunk (a unit of work for one thread)


class WordRewriter(Protocol):
    """A sanitizer that rewrites float words in place (``lsb-randomize``, ``lsb-zero``)."""

    def rewrite_words(
        self,
        words: np.ndarray,
        fmt: FloatFormat,
        *,
        rng: np.random.Generator,
        scratch: np.ndarray | None = None,
    ) -> None:
        """Rewrites ``words`` in place."""


class Scratch:
    """Buffers reused from chunk to chunk to compare words (one per worker thread)."""

    def __init__(self) -> None:
        self._diff = np.empty(0, np.float32)
        self._wide = np.zeros(0, np.uint32)
        self._same = np.empty(0, np.bool_)
        self.noise = np.empty(0, np.uint8)

    def noise_for(self, words: np.ndarray) -> np.ndarray:
        """A byte buffer large enough for the noise of ``words``."""
        if self.noise.size < words.nbytes + 16:
            self.noise = np.empty(words.nbytes + 16, np.uint8)
        return self.noise

    def changes(self, old: np.ndarray, new: np.ndarray, fmt: FloatFormat) -> tuple[int, float]:
        """How many words differ, and the sum of the absolute changes of their values."""
        n = old.size
        if self._same.size < n:
            self._same = np.empty(n, np.bool_)
            self._diff = np.empty(n, np.float32)
        changed = int(np.count_nonzero(np.not_equal(old, new, out=self._same[:n])))
        if not changed:
            return 0, 0.0
        diff = self._diff[:n]
        if fmt is FLOAT16:
            np.copyto(diff, new.view("<f2"), casting="same_kind")
            np.subtract(diff, old.view("<f2"), out=diff, casting="same_kind")
        elif fmt is BFLOAT16:  # bfloat16 is the high half of a float32
            np.left_shift(new, 16, out=diff.view(np.uint32), dtype=np.uint32)
            np.subtract(diff, self._upcast(old), out=diff)
        else:
            np.subtract(new.view("<f4"), old.view("<f4"), out=diff)
        np.abs(diff, out=diff)
        with np.errstate(invalid="ignore", over="ignore"):
            total = float(diff.sum())
        if not np.isfinite(total):
            total = float(np.nansum(diff, dtype=np.float64))
        return changed, total

    def _upcast(self, words: np.ndarray) -> np.ndarray:
        if self._wide.size < words.size:
            self._wide = np.zeros(words.size, np.uint32)
        wide = self._wide[: words.size]
        np.left_shift(words, 16, out=wide, dtype=np.uint32)
        return wide.view(np.float32)


class Tally:
    """Counts what changed: values, changed values, tensors changed, total absolute change.

    Example:
        >>> t = Tally()
        >>> t.add("w", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
        >>> t.values, t.changed, t.total, sorted(t.changed_in)
        (2, 1, 0.5, ['w'])
    """

    def __init__(self) -> None:
        self.values = self.changed = 0
        self.total = 0.0
        self.changed_in: set[str] = set()
        self._scratch = Scratch()

    def add(self, name: str, before: torch.Tensor, after: torch.Tensor) -> None:
        """Counts one tensor (or chunk) before and after."""
        a, b = before.detach().reshape(-1), after.detach().reshape(-1)
        fmt = float_format(a.dtype)
        if fmt is not None:
            changed, total = self._scratch.changes(words_of(a, fmt), words_of(b, fmt), fmt)
            self.record(name, values=a.numel(), changed=changed, total=total)
            return
        for start in range(0, a.numel(), STAT_CHUNK):
            x = a[start : start + STAT_CHUNK].to(torch.float64)
            y = b[start : start + STAT_CHUNK].to(torch.float64)
            diff = (y - x).abs()
            self.record(
                name,
                values=x.numel(),
                changed=int((diff > 0).sum()) + int((x.isnan() != y.isnan()).sum()),
                total=float(diff.nan_to_num(0.0).sum()),
            )

    def record(self, name: str, *, values: int, changed: int, total: float) -> None:
        """Adds counts made elsewhere."""
        self.values += values
        self.changed += changed
        self.total += total
        if changed:
            self.changed_in.add(name)


def words_of(tensor: torch.Tensor, fmt: FloatFormat) -> np.ndarray:
    """A flat view (no copy where contiguous) of a float tensor's words."""
    flat = tensor.detach().reshape(-1).contiguous()
    return flat.view(fmt.int_dtype).numpy().view(fmt.word)


class WordStream:
    """The writer's transform for a :class:`WordRewriter`: reused buffers, in-place words.

    Results go to a ring of ``PENDING + 2`` buffers, as the checkpoint writer writes each
    on a background thread while the next chunks are read and rewritten.

    Each call's values are split in parts of :data:`PART` values, rewritten and compared on
    ``workers`` threads (NumPy and OpenSSL release the GIL). Every part draws its own seed
    from ``rng`` in order, so the output depends on the seed alone, not on the threads.

    Args:
        sanitizer: Rewrites the words of each part.
        rng: The random stream of the run.
        tally: Where the changes are counted.
        size: The most values one call receives (the writer's chunk, or the largest tensor).
        workers: Threads (default: torch's intra-op thread count).

    Example:
        >>> from covertml.defenses import create_sanitizer
        >>> from covertml.models.checkpoint import info_of
        >>> t, x = Tally(), torch.ones(10, dtype=torch.float16)
        >>> stream = WordStream(create_sanitizer("lsb-zero", bits=10), rng=np.random.default_rng(),
        ...                     tally=t, size=10)
        >>> stream(info_of("w", x), x * 1.999).tolist() == [1.0] * 10, t.changed
        (True, 10)
    """

    def __init__(
        self,
        sanitizer: WordRewriter,
        *,
        rng: np.random.Generator,
        tally: Tally,
        size: int,
        workers: int | None = None,
    ) -> None:
        self.sanitizer, self.rng, self.tally = sanitizer, rng, tally
        self.workers = max(1, workers or torch.get_num_threads())
        self._ring = [np.empty(size * 4, np.uint8) for _ in range(PENDING + 2)]
        self._turn = 0
        self._scratch = [Scratch() for _ in range(self.workers)]
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def close(self) -> None:
        """Stops the worker threads."""
        if self._pool is not None:
            self._pool.shutdown()

    def __call__(self, info: TensorInfo, values: torch.Tensor) -> torch.Tensor:
        """The rewritten values, in this stream's output buffer (written before the next)."""
        fmt = require_format(values.dtype)
        old = words_of(values, fmt)
        self._turn = (self._turn + 1) % len(self._ring)  # the writer may still hold the others
        if self._ring[self._turn].size < old.nbytes:  # a caller passing more than promised
            self._ring[self._turn] = np.empty(old.nbytes, np.uint8)
        new = self._ring[self._turn][: old.nbytes].view(fmt.word)
        starts = range(0, old.size, PART)
        seeds = self.rng.integers(0, 2**63, size=len(starts))
        jobs = [
            (old[a : a + PART], new[a : a + PART], fmt, int(seed), k % self.workers)
            for k, (a, seed) in enumerate(zip(starts, seeds, strict=True))
        ]
        if self._pool is None or len(jobs) == 1:
            results = [self._part(*job) for job in jobs]
        else:  # each worker slot owns one Scratch: slot k runs parts k, k + workers, ...
            by_slot = [[j for j in jobs if j[4] == k] for k in range(self.workers)]
            futures = [self._pool.submit(self._parts, group) for group in by_slot if group]
            results = [r for f in futures for r in f.result()]
        self.tally.record(
            info.name,
            values=old.size,
            changed=sum(r[0] for r in results),
            total=sum(r[1] for r in results),
        )
        signed = new.view(new.dtype.str.replace("u", "i"))
        return torch.from_numpy(signed).view(fmt.torch_dtype).reshape(values.shape)

    def _parts(
        self, jobs: list[tuple[np.ndarray, np.ndarray, FloatFormat, int, int]]
    ) -> list[tuple[int, float]]:
        return [self._part(*job) for job in jobs]

    def _part(
        self, old: np.ndarray, new: np.ndarray, fmt: FloatFormat, seed: int, slot: int
    ) -> tuple[int, float]:
        scratch = self._scratch[slot]
        np.copyto(new, old)
        rng = np.random.default_rng(seed)
        self.sanitizer.rewrite_words(new, fmt, rng=rng, scratch=scratch.noise_for(new))
        return scratch.changes(old, new, fmt)
