"""The scheduler's timer table in memory: the active timers this process knows, one heap
by due time, and each task's waits (see :mod:`wakeful.schedule.timers`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from wakeful.core.scope import TaskScope
from wakeful.core.timers import Timer
from wakeful.core.wake import Wake
from wakeful.errors import WakefulError
from wakeful.schedule.clock import Clock
from wakeful.store.timers import TimerStore

if TYPE_CHECKING:
    from wakeful.schedule.host import ScheduleHost


WakeCallback = Callable[[Wake], None]


class TimerTable:
    """The scheduler's state, shared by its parts: the table, and firing."""

    def __init__(self, *, agent_schedules: bool = True) -> None:
        # False: do not register the agents' ``schedule:`` entries (replay does this:
        # the runs they started are replayed from the recording instead).
        self.agent_schedules = agent_schedules
        self._runtime: ScheduleHost | None = None
        self._store: TimerStore | None = None
        self._clock: Clock | None = None
        self._timers: dict[str, Timer] = {}  # the active timers this process knows
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._by_task: dict[str, set[str]] = {}  # task -> its active waits
        self._waited: set[str] = set()  # tasks that have wait rows (to drop as they end)
        self._callbacks: dict[str, WakeCallback] = {}
        self._scope = TaskScope("scheduler")
        self._loop: asyncio.Task[None] | None = None
        self._kick: asyncio.Future[None] | None = None
        self._armed_for = math.inf
        self._parked = asyncio.Event()
        self.firing = False  # a round of firings is being handled (the runtime is not idle)
        self.fired = 0  # firings (runs) so far in this process
        # Timers ended here while a read of the store's active timers was under way:
        # that read may still list them, and must not bring them back.
        self._reads = 0
        self._ended_during_read: set[str] = set()

    @property
    def runtime(self) -> ScheduleHost:
        if self._runtime is None:
            raise WakefulError("the scheduler is not started (start the runtime)")
        return self._runtime

    @property
    def clock(self) -> Clock:
        if self._clock is None:
            raise WakefulError("the scheduler is not started (start the runtime)")
        return self._clock

    @property
    def store(self) -> TimerStore:
        if self._store is None:
            raise WakefulError("the scheduler is not started (start the runtime)")
        return self._store

    # the timer table in memory -------------------------------------------
    def _remember(self, timer: Timer) -> None:
        self._timers[timer.id] = timer
        if timer.task_id is not None and timer.action == "wake_task":
            self._by_task.setdefault(timer.task_id, set()).add(timer.id)
            self._waited.add(timer.task_id)
        if timer.next_due is not None:
            self._push(timer)

    def _push(self, timer: Timer) -> None:
        assert timer.next_due is not None
        heapq.heappush(self._heap, (timer.next_due, next(self._seq), timer.id))
        if timer.next_due < self._armed_for:
            self._wake_loop()

    def _forget(self, timer: Timer) -> None:
        self._timers.pop(timer.id, None)
        if self._reads:
            self._ended_during_read.add(timer.id)
        if timer.task_id is not None:
            ids = self._by_task.get(timer.task_id)
            if ids is not None:
                ids.discard(timer.id)
                if not ids:
                    del self._by_task[timer.task_id]

    async def _read_new(self) -> list[Timer]:
        """The store's active timers this table does not know yet, leaving out those
        it ended while the read was under way (a cancel racing a refresh would
        otherwise bring its timer back to life here)."""
        assert self._store is not None
        self._reads += 1
        try:
            found = await self._store.active()
        finally:
            self._reads -= 1
        ended = self._ended_during_read
        new = [t for t in found if t.id not in self._timers and t.id not in ended]
        if not self._reads:
            ended.clear()
        return new

    def get(self, timer_id: str) -> Timer | None:
        """An active timer this process knows."""
        return self._timers.get(timer_id)

    def active(self) -> list[Timer]:
        return sorted(self._timers.values(),
                      key=lambda t: (t.next_due is None, t.next_due or 0.0, t.created_at))

    def of_task(self, task_id: str) -> list[Timer]:
        return [self._timers[i] for i in self._by_task.get(task_id, ()) if i in self._timers]

    def next_for_agent(self, agent: str) -> Timer | None:
        """The agent's next timer that starts or wakes something (not its tasks' waits)."""
        mine = [t for t in self._timers.values() if t.agent == agent and t.next_due is not None
                and t.action != "wake_task"]
        return min(mine, key=lambda t: t.next_due or 0.0, default=None)

    # waking the firing loop (:mod:`wakeful.schedule.firing`) -----------------
    def _wake_loop(self) -> None:
        self._parked.clear()
        kick = self._kick
        if kick is not None and not kick.done():
            kick.set_result(None)
