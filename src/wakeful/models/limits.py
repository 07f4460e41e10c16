"""Keeping many agents within what one provider allows.

All agents whose model names a provider share one :class:`ProviderLimits`: a cap on
requests in flight, token buckets for requests and tokens per minute, and a shared
cool-down that a 429 with ``Retry-After`` imposes on everyone (when the endpoint says
"wait", every caller waits, not only the one that was told).

Waiters are served first come, first served: each bucket admits one waiter at a time
under a lock, so a burst of agents cannot starve an early one. Token use is not known
until a reply arrives, so a call reserves an estimate and :meth:`ProviderLimits.settle`
charges the difference afterwards (the bucket may go below zero, delaying later calls).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class TokenBucket:
    """``per_minute`` units per minute, of which ``burst`` may be spent at once."""

    def __init__(self, per_minute: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, burst)
        self._clock = clock
        self.level = self.capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    async def take(self, amount: float) -> float:
        """Wait until ``amount`` is available and spend it; return the seconds waited.

        An amount above the capacity is clamped (it waits for a full bucket) so that a
        large request is slowed, never stuck; :meth:`adjust` charges the rest.
        """
        amount = min(amount, self.capacity)
        waited = 0.0
        async with self._lock:
            while True:
                self._refill()
                if self.level >= amount:
                    self.level -= amount
                    return waited
                delay = (amount - self.level) / self.rate
                await asyncio.sleep(delay)
                waited += delay

    def adjust(self, amount: float) -> None:
        """Charge (positive) or refund (negative) units after the fact."""
        self._refill()
        self.level = min(self.capacity, self.level - amount)


class ProviderLimits:
    def __init__(self, *, concurrency: int, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None, burst_s: float = 1.0) -> None:
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self.requests = (TokenBucket(requests_per_minute, requests_per_minute / 60 * burst_s)
                         if requests_per_minute else None)
        self.tokens = (TokenBucket(tokens_per_minute, tokens_per_minute / 60 * burst_s)
                       if tokens_per_minute else None)
        self._hold_until = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0

    def hold(self, seconds: float) -> None:
        """Make every new request wait ``seconds`` from now (a 429's Retry-After)."""
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    @asynccontextmanager
    async def slot(self, token_estimate: int) -> AsyncIterator[float]:
        """Hold a concurrency slot for one request, once the rates allow it; yields
        how long the caller waited for the limits."""
        started = time.monotonic()
        async with self._slots:
            while True:  # a hold may be extended while we wait: look again after it
                pause = self._hold_until - time.monotonic()
                if pause <= 0:
                    break
                await asyncio.sleep(pause)
            if self.requests is not None:
                await self.requests.take(1)
            if self.tokens is not None:
                await self.tokens.take(token_estimate)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield time.monotonic() - started
            finally:
                self.in_flight -= 1

    def settle(self, token_estimate: int, tokens_used: int) -> None:
        """Charge the tokens a call really used against what it reserved."""
        if self.tokens is not None:
            self.tokens.adjust(tokens_used - min(token_estimate, self.tokens.capacity))
