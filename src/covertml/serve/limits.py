"""Per-client query budget and rate limit of the prediction API (counted in inputs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServeLimits:
    """Limits of one server.

    Attributes:
        max_batch: Most inputs per request.
        max_body_bytes: Largest request body.
        query_budget: Inputs each client may ever ask about (``None``: unlimited).
        rate: Inputs per second each client may ask about (``None``: unlimited).
        burst: Inputs a client may ask about at once after being idle (default: ``rate``,
            at least ``max_batch``).
    """

    max_batch: int = 8192
    max_body_bytes: int = 64 * 1024 * 1024
    query_budget: int | None = None
    rate: float | None = None
    burst: float | None = None

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_body_bytes < 1:
            raise ValueError("max_batch and max_body_bytes must be positive")
        if self.query_budget is not None and self.query_budget < 0:
            raise ValueError("query_budget must be >= 0")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0")


class LimitExceededError(Exception):
    """A request over a client's budget or rate: ``retry_after`` seconds, or ``None``."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass
class _Client:
    used: int = 0
    tokens: float = 0.0
    stamp: float = 0.0


@dataclass
class QueryGate:
    """Counts each client's queries; refuses those over the budget or the rate.

    Example:
        >>> gate = QueryGate(ServeLimits(query_budget=5))
        >>> gate.admit("a", 3); gate.admit("a", 2)
        >>> try:
        ...     gate.admit("a", 1)
        ... except LimitExceededError as r:
        ...     print(r.message)
        query budget of 5 inputs used up (5 asked so far)
    """

    limits: ServeLimits
    clock: Callable[[], float] = time.monotonic
    _clients: dict[str, _Client] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def burst(self) -> float:
        """Bucket size of the rate limit."""
        lim = self.limits
        if lim.burst is not None:
            return lim.burst
        return max(lim.rate or 0.0, float(lim.max_batch))

    def admit(self, client: str, n: int) -> None:
        """Records ``n`` queries of ``client``, or raises :class:`LimitExceededError`."""
        lim = self.limits
        with self._lock:
            state = self._clients.setdefault(client, _Client(tokens=self.burst, stamp=self.clock()))
            if lim.query_budget is not None and state.used + n > lim.query_budget:
                raise LimitExceededError(
                    f"query budget of {lim.query_budget} inputs used up "
                    f"({state.used} asked so far)",
                    None,
                )
            if lim.rate is not None:
                now = self.clock()
                state.tokens = min(self.burst, state.tokens + (now - state.stamp) * lim.rate)
                state.stamp = now
                if n > self.burst:
                    raise LimitExceededError(
                        f"batch of {n} exceeds the burst of {self.burst:.0f}", None
                    )
                if state.tokens < n:
                    wait = (n - state.tokens) / lim.rate
                    raise LimitExceededError(f"rate limit of {lim.rate:g} inputs/s exceeded", wait)
                state.tokens -= n
            state.used += n

    def used(self, client: str) -> int:
        """Queries ``client`` made so far."""
        with self._lock:
            return self._clients[client].used if client in self._clients else 0
