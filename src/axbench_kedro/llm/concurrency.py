"""Adaptive limit on LLM calls in flight (AIMD), and a timeout that follows the server's observed latency.

A server that answers one request at a time (llama.cpp's default single slot, a small Ollama box) queues every
request it cannot serve yet; with a fixed 32 calls in flight and a 60 s timeout the queued ones time out, their
retries queue again, and a run fails with almost nothing done. :class:`AdaptiveLimiter` behaves like TCP's
congestion control instead:

* start at ``initial`` calls in flight;
* grow by one after each success whose latency stays within ``latency_factor`` × the recent minimum (+ a small
  slack): the server is keeping up;
* halve on an overload signal (timeout, 429, 503, connection error), once per window: calls sent before the last
  decrease do not halve again, so a burst of 32 timeouts is one decrease, not 32;
* stay within ``[1, max_limit]``.

No library on PyPI did this and was kept well enough to depend on, so it is a small class here. Limits are
per event loop (asyncio futures are bound to one). ``adaptive=False`` gives a plain fixed limit.

Example:
    >>> limiter = AdaptiveLimiter(max_limit=32, initial=4)
    >>> ticket = await limiter.acquire()  # doctest: +SKIP
    >>> limiter.record(ticket, latency_s=1.2)  # doctest: +SKIP
    >>> limiter.release(ticket)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass

__all__ = ["AdaptiveLimiter", "Ticket", "OVERLOAD_STATUSES"]

#: Statuses of a transient failure that mean "too much load": the limit halves on them.
OVERLOAD_STATUSES: frozenset[int | str] = frozenset({429, 502, 503, 504, 529, "timeout", "connection"})


@dataclass
class Ticket:
    """One slot: the window (number of decreases so far) its current attempt was sent in, and whether it is held."""

    window: int
    held: bool = True


class AdaptiveLimiter:
    """AIMD limit on concurrent calls (see module docstring).

    Args:
        max_limit: upper bound on calls in flight.
        initial: starting limit (``None`` = ``min(4, max_limit)``); ignored when ``adaptive`` is off.
        adaptive: ``False`` keeps the limit at ``max_limit``.
        latency_factor: a success grows the limit when its latency is at most this × the recent minimum.
        latency_slack_s: seconds added to that bound (loopback latencies of a millisecond are noise).
        window: successes remembered for the recent minimum latency and the timeout.
    """

    def __init__(
        self,
        max_limit: int,
        *,
        initial: int | None = None,
        adaptive: bool = True,
        latency_factor: float = 2.0,
        latency_slack_s: float = 0.1,
        window: int = 100,
    ) -> None:
        if max_limit < 1:
            raise ValueError(f"max_limit must be >= 1, got {max_limit}")
        self.max_limit = int(max_limit)
        self.adaptive = bool(adaptive)
        start = min(4, self.max_limit) if initial is None else int(initial)
        self.limit: float = float(min(max(start, 1), self.max_limit) if self.adaptive else self.max_limit)
        self.latency_factor = float(latency_factor)
        self.latency_slack_s = float(latency_slack_s)
        self._latencies: deque[float] = deque(maxlen=max(1, int(window)))
        self._in_flight = 0
        self._window = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.min_limit_seen = int(self.limit)
        self.max_limit_seen = int(self.limit)
        self.decreases = 0

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimiter(limit={int(self.limit)}, max_limit={self.max_limit}, adaptive={self.adaptive}, "
            f"in_flight={self._in_flight})"
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self) -> Ticket:
        """Wait for a free slot and take it."""
        loop = asyncio.get_running_loop()
        while self._in_flight >= int(self.limit):
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                self._wake()  # a wake-up this waiter received must not be lost
                raise
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
        self._in_flight += 1
        return Ticket(self._window)

    async def requeue(self, ticket: Ticket) -> None:
        """Before a retry: when the limit fell below the calls in flight, give the slot up and wait for one
        under the new limit (a retry must not keep the old, larger limit alive)."""
        if self._in_flight <= int(self.limit):
            return
        self.release(ticket)
        ticket.window = (await self.acquire()).window
        ticket.held = True

    def sending(self, ticket: Ticket) -> None:
        """An attempt of the slot's call is sent now (a retry after a decrease belongs to the new window)."""
        ticket.window = self._window

    def record(self, ticket: Ticket, *, latency_s: float | None = None, overload: bool = False) -> None:
        """What one attempt showed: a success's latency, or an overload signal."""
        if latency_s is not None and math.isfinite(latency_s):
            self._latencies.append(float(latency_s))
        if self.adaptive:
            if overload and ticket.window == self._window:
                self.limit = max(1.0, math.floor(self.limit / 2))
                self._window += 1
                self.decreases += 1
            elif latency_s is not None and self._latency_holds(latency_s):
                self.limit = min(float(self.max_limit), self.limit + 1)
            self.min_limit_seen = min(self.min_limit_seen, int(self.limit))
            self.max_limit_seen = max(self.max_limit_seen, int(self.limit))
        self._wake()

    def release(self, ticket: Ticket) -> None:
        """Give the slot back (once: releasing a slot not held does nothing)."""
        if not ticket.held:
            return
        ticket.held = False
        self._in_flight -= 1
        self._wake()

    def _latency_holds(self, latency_s: float) -> bool:
        base = min(self._latencies) if self._latencies else latency_s
        return latency_s <= self.latency_factor * base + self.latency_slack_s

    def _wake(self) -> None:
        free = int(self.limit) - self._in_flight
        for fut in list(self._waiters):
            if free <= 0:
                break
            if not fut.done():
                fut.set_result(None)
                free -= 1

    def timeout_s(self, base_s: float, *, factor: float = 3.0, cap_s: float | None = None) -> float:
        """A per-call timeout: ``base_s``, or ``factor`` × the slowest recent success when that is longer (a
        server whose queue makes every reply slow is not declared dead), at most ``cap_s``."""
        slowest = max(self._latencies) if self._latencies else 0.0
        timeout = max(float(base_s), factor * slowest)
        return min(timeout, float(cap_s)) if cap_s is not None else timeout
