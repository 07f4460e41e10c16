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
import math
import time
from collections import deque
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
    """The limits of one provider as this worker applies them.

    With several workers on one store, each applies its share: the configured
    concurrency and rates divided by the live workers (:meth:`share`, which the runtime
    calls whenever that number changes), so that the team as a whole stays within what
    the provider allows without a round trip to the store on every call.
    """

    def __init__(self, *, concurrency: int, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None, burst_s: float = 1.0) -> None:
        self.concurrency = concurrency
        self.workers = 1
        self.allowed = concurrency  # this worker's share of ``concurrency``
        self._taken = 0  # slots held (a holder may still wait for the rates)
        self._waiters: deque[asyncio.Future[None]] = deque()  # first come, first served
        self._rates = (requests_per_minute, tokens_per_minute, burst_s)
        self.requests: TokenBucket | None = None
        self.tokens: TokenBucket | None = None
        self._make_buckets(1)
        self._hold_until = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0

    def _make_buckets(self, workers: int) -> None:
        requests, tokens, burst_s = self._rates
        self.requests = (TokenBucket(requests / workers, requests / workers / 60 * burst_s)
                         if requests else None)
        self.tokens = (TokenBucket(tokens / workers, tokens / workers / 60 * burst_s)
                       if tokens else None)

    def share(self, workers: int) -> None:
        """Apply ``1/workers`` of the configured limits from now on (at least one call in
        flight each). Calls already in flight finish; new ones wait for the new cap."""
        workers = max(1, workers)
        if workers == self.workers:
            return
        self.workers = workers
        self.allowed = max(1, math.ceil(self.concurrency / workers))
        self._make_buckets(workers)
        self._hand_over()

    async def _take_slot(self) -> None:
        if self._taken < self.allowed and not self._waiters:
            self._taken += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn  # resolved by _hand_over, which counted the slot as ours
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_slot()  # handed a slot just as we were cancelled: pass it on
            else:
                self._waiters.remove(turn)
            raise

    def _give_slot(self) -> None:
        self._taken -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        while self._taken < self.allowed and self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                self._taken += 1
                turn.set_result(None)

    def hold(self, seconds: float) -> None:
        """Make every new request wait ``seconds`` from now (a 429's Retry-After)."""
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    @asynccontextmanager
    async def slot(self, token_estimate: int) -> AsyncIterator[float]:
        """Hold a concurrency slot for one request, once the rates allow it; yields
        how long the caller waited for the limits."""
        started = time.monotonic()
        await self._take_slot()
        try:
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
        finally:
            self._give_slot()

    def settle(self, token_estimate: int, tokens_used: int) -> None:
        """Charge the tokens a call really used against what it reserved."""
        if self.tokens is not None:
            self.tokens.adjust(tokens_used - min(token_estimate, self.tokens.capacity))
