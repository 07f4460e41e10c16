"""Time, behind one small interface, so "every 30 minutes" can be tested in milliseconds.

Everything in :mod:`wakeful.schedule` asks the runtime's clock for the time and for
wake-ups, never :mod:`time` or :func:`asyncio.sleep` directly. :class:`RealClock` is
wall time on the event loop; :class:`FakeClock` stands still until a test moves it with
:meth:`FakeClock.advance`, which fires what came due in order, letting the scheduler
finish each firing before time moves on.

Times are seconds since the epoch (wall time), because timers are stored and must mean
the same instant to the next process, after a restart.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

# Wall time can jump (NTP, a suspended laptop); the event loop's timers run on the
# monotonic clock. A real wake-up is therefore never armed more than this far ahead:
# the sleeper looks at the wall clock again at least this often.
MAX_ARM_S = 60.0


class Handle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        """Call ``callback()`` (on the event loop) once ``now() >= when``."""

    async def sleep_until(self, when: float) -> None:
        """Return once ``now() >= when``."""


async def _sleep_until(clock: Clock, when: float) -> None:
    if clock.now() >= when:
        return
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    handle = clock.call_at(when, wake)
    try:
        await future
    finally:
        handle.cancel()


class _RealHandle:
    """Re-arms itself in steps of at most :data:`MAX_ARM_S` (see there)."""

    __slots__ = ("_callback", "_handle", "_when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self._when = when
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        delay = self._when - time.time()
        loop = asyncio.get_running_loop()
        if delay > MAX_ARM_S:
            self._handle = loop.call_later(MAX_ARM_S, self._check)
        else:
            self._handle = loop.call_later(max(0.0, delay), self._fire)

    def _check(self) -> None:
        self._arm()

    def _fire(self) -> None:
        self._handle = None
        self._callback()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class RealClock:
    """Wall time; wake-ups on the running event loop."""

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        return _RealHandle(when, callback)

    async def sleep_until(self, when: float) -> None:
        await _sleep_until(self, when)


class _FakeHandle:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told to (tests).

    ``await clock.advance(1800)`` moves time forward half an hour: every wake-up that
    came due on the way is called in time order, with :meth:`now` reading its due
    time, and after each one the clock waits for whoever registered with
    :meth:`on_advance` (the scheduler) to finish what that wake-up started.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, _FakeHandle]] = []
        self._seq = itertools.count()
        self._settlers: list[Callable[[], Awaitable[None]]] = []

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = _FakeHandle(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    async def sleep_until(self, when: float) -> None:
        await _sleep_until(self, when)

    def on_advance(self, settle: Callable[[], Awaitable[None]]) -> None:
        """Await ``settle()`` after each wake-up :meth:`advance` calls."""
        self._settlers.append(settle)

    def pending(self) -> int:
        """How many wake-ups are armed (cancelled ones excluded)."""
        return sum(1 for _, _, h in self._heap if not h.cancelled)

    async def _settle(self) -> None:
        # Let callbacks' consequences run (futures resolved, tasks resumed) ...
        for _ in range(3):
            await asyncio.sleep(0)
        # ... and the scheduler finish the firings they started.
        for settle in self._settlers:
            await settle()

    async def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        await self.advance_to(self._now + seconds)

    async def advance_to(self, when: float) -> None:
        await self._settle()
        while self._heap and self._heap[0][0] <= when:
            due, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self._now = max(self._now, due)
            handle.callback()
            await self._settle()
        self._now = max(self._now, when)
        await self._settle()
