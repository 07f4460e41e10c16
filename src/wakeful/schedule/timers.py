"""The scheduler: durable timers, fired exactly once per due time.

How it works, and why:

* **Timers live in the store** (the ``timers`` table), so they survive a restart. At
  start the scheduler loads the active ones; from then on it keeps them in memory, in
  one heap ordered by due time.
* **One sleeper.** A single asyncio task sleeps until the earliest due time (on the
  runtime's :class:`~wakeful.schedule.clock.Clock`), never one task per timer:
  a thousand timers, or ten thousand sleeping tasks, cost one heap entry each.
* **Exactly once.** A schedule's firing is claimed in the store with a compare-and-set
  on its due time, in the same transaction as the tasks it starts and its
  ``timer.fired`` event (:meth:`wakeful.store.timers.TimerStore.claim_firings`).
  Another process that shares the store cannot fire the same due time, and a process
  killed mid-firing leaves all of it or none of it.
* **Misfires.** A timer whose due time passed while no process ran it (or that is
  more than :data:`~wakeful.schedule.plans.MISFIRE_GRACE_S` late) follows its misfire
  policy: ``once`` (the default) fires once now for all the runs it missed, ``skip``
  drops them and waits for the next due time, ``all`` fires each missed run (at most
  :data:`~wakeful.schedule.plans.MAX_CATCH_UP`).
* **Sleeping tasks** (``wake_task`` timers) are woken the moment their timer is due;
  that the wait ended is written right after (it is ordered before the task's next
  step in the store's single writer), so the wake-up is not held up by a commit.

Agent schedules (``schedule:`` in an agent file) are registered at start under a key
made from the entry, so a restart does not register them twice; an entry removed from
the file cancels its timer.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import structlog

from wakeful.core.timers import Timer, TimerAction
from wakeful.core.timespecs import MisfirePolicy, TimerSpec
from wakeful.errors import ScheduleError
from wakeful.ids import new_id
from wakeful.project.definitions import AgentDefinition
from wakeful.schedule.firing import Firing
from wakeful.schedule.plans import _entry_keys, schedule_spec
from wakeful.schedule.table import WakeCallback

log = structlog.get_logger("wakeful.schedule")

if TYPE_CHECKING:
    from wakeful.schedule.host import ScheduleHost


class Scheduler(Firing):
    """The ``scheduler`` service: reachable as ``runtime.scheduler``.

    One object composed of its parts: the timer table (:mod:`~wakeful.schedule.table`)
    and firing (:mod:`~wakeful.schedule.firing`); this module adds and cancels timers."""

    name = "scheduler"

    # lifecycle -----------------------------------------------------------
    async def start(self, runtime: ScheduleHost) -> None:
        self._runtime = runtime
        self._clock = runtime.clock
        self._store = runtime.store.timers()
        self._parked = asyncio.Event()
        for timer in await self._store.active():
            self._remember(timer)
        if self.agent_schedules:
            for definition in runtime.definitions():
                await self.register_schedules(definition)
        on_advance = getattr(self._clock, "on_advance", None)
        if on_advance is not None:
            on_advance(self.settle)
        runtime.on_settle(self._task_settled)

    def begin(self) -> None:
        """Start firing (the runtime calls this once its agents run)."""
        if self._loop is None:
            self._loop = self._scope.spawn(self._run(), name="scheduler:timers")
            if self._runtime is not None and self._runtime.store.notifies:
                self._scope.spawn(self._hear_timers(), name="scheduler:doorbell")

    async def _hear_timers(self) -> None:
        """Timers added by other workers (for agents this one may run next, after a
        failover) join this worker's table when their doorbell rings; whichever worker
        sees one come due first fires it, once (the firing is a compare-and-set)."""
        assert self._runtime is not None and self._store is not None
        bells = self._runtime.store.bells
        bell = bells.subscribe(("timers",))
        try:
            while True:
                await bell.wait(None)
                try:
                    for timer in await self._read_new():
                        self._remember(timer)
                except Exception as exc:  # the store is busy: the next ring retries
                    log.warning("scheduler: reading new timers failed", error=repr(exc))
                await asyncio.sleep(self._runtime.poll_interval_s)  # at most this often
        finally:
            bells.unsubscribe(bell)

    async def stop(self) -> None:
        await self._scope.aclose()
        self._loop = None
        self._parked.set()
        self._callbacks.clear()

    # adding and cancelling -------------------------------------------------
    async def add(
        self,
        spec: TimerSpec | None,
        action: TimerAction,
        *,
        agent: str | None = None,
        task_id: str | None = None,
        instruction: str | None = None,
        key: str | None = None,
        misfire: MisfirePolicy = "once",
        max_runs: int | None = None,
        purpose: str = "",
        created_by: str = "api",
        conditions: str | None = None,
    ) -> Timer:
        """Store a timer and arm it. With ``key``, adding again returns the first one
        (whatever state it is in now): a restart or a repeated call does not add twice."""
        if action == "start_task" and not (instruction or "").strip():
            raise ScheduleError("a schedule that starts tasks needs an instruction")
        if max_runs is not None and max_runs < 1:
            raise ScheduleError(f"max_runs must be at least 1, got {max_runs}")
        now = self.clock.now()
        due = spec.first_due(now) if spec is not None else None
        if spec is not None and due is None:
            raise ScheduleError(f"timer {spec.describe()} is never due")
        timer = Timer(
            id=new_id("tm"), key=key, kind=spec.kind if spec else "event",
            spec=spec.value if spec else "", timezone=spec.timezone if spec else "UTC",
            anchor=spec.anchor if spec else 0.0, action=action, agent=agent, task_id=task_id,
            instruction=instruction, purpose=purpose, misfire=misfire, max_runs=max_runs,
            state="active", next_due=due, last_fired=None, fired=0, created_at=now,
            created_by=created_by, conditions=conditions, outcome=None, ended_at=None)
        stored = await self.store.insert(timer)
        if action == "wake_task" and task_id is not None:
            self._waited.add(task_id)
        if stored is not timer:  # the key was taken: this is the timer added before
            known = self._timers.get(stored.id)
            if known is not None:
                return known
            if stored.active:  # added by another process since this one started
                self._remember(stored)
            return stored
        self._remember(timer)
        if action != "wake_task":
            self.runtime.events.emit("timer.created", agent=agent, data={
                **timer.to_dict(), "spec": timer.spec})
        return timer

    async def cancel(self, timer_id: str, why: str = "cancelled") -> Timer:
        """Cancel an active timer (it never fires again); returns it as it ends."""
        timer = self._timers.get(timer_id) or await self.store.get(timer_id)
        if timer is None:
            raise ScheduleError(f"unknown timer {timer_id!r}")
        if not timer.active:
            return timer
        now = self.clock.now()
        outcome = json.dumps({"reason": "cancelled", "why": why, "at": now})
        if await self.store.cancel(timer.id, now, outcome):
            timer.state = "cancelled"
            timer.next_due = None
            timer.ended_at = now
            timer.outcome = outcome
        self._forget(timer)
        self._callbacks.pop(timer.id, None)
        self.runtime.events.emit("timer.cancelled", agent=timer.agent, task_id=timer.task_id,
                                 data={"timer_id": timer.id, "why": why,
                                       "action": timer.action})
        return timer

    def end_wait(self, timer: Timer, state: str, outcome: dict[str, Any] | None) -> None:
        """A task's wait ended (an event woke it, or it ended with the task): record it
        without waiting for the commit."""
        if not timer.active:
            return
        now = self.clock.now()
        timer.state = "done" if state == "done" else "cancelled"
        timer.next_due = None
        timer.ended_at = now
        timer.outcome = json.dumps(outcome) if outcome is not None else None
        self._forget(timer)
        self._callbacks.pop(timer.id, None)
        self.store.end_waits_nowait([(timer.id, timer.state, timer.outcome or "null", now)])

    def on_fire(self, timer_id: str, callback: WakeCallback) -> bool:
        """Call ``callback(wake)`` when wait timer ``timer_id`` fires (False: it is not
        active here)."""
        if timer_id not in self._timers:
            return False
        self._callbacks[timer_id] = callback
        return True

    def off_fire(self, timer_id: str) -> None:
        self._callbacks.pop(timer_id, None)

    def _task_settled(self, record: Any) -> None:
        """A task reached its final outcome: its waits end with it, and their rows go.

        A task's wait rows exist so that the task, resumed after a restart, finds the
        wait it was in; once it has finished they have done their job (``task.woke``
        events keep the history), so the table does not grow with every sleep ever.
        """
        for timer_id in list(self._by_task.get(record.id, ())):
            timer = self._timers.get(timer_id)
            if timer is not None:
                timer.state = "cancelled"
                self._forget(timer)
                self._callbacks.pop(timer_id, None)
        if record.id in self._waited:
            self._waited.discard(record.id)
            self.store.forget_task_nowait(record.id)

    # agent schedules -------------------------------------------------------
    async def register_schedules(self, definition: AgentDefinition) -> list[Timer]:
        """Register the agent file's ``schedule:`` entries (once: keyed by content), and
        cancel the timers of entries that were removed from the file."""
        wanted = _entry_keys(definition)
        now = self.clock.now()
        for timer_id, key in await self.store.schedule_keys(definition.name):
            if key not in wanted:
                await self.cancel(timer_id, f"its entry was removed from the file of agent "
                                  f"{definition.name!r}")
        timers = []
        for key, entry in wanted.items():
            timers.append(await self.add(
                schedule_spec(entry, now), "start_task", agent=definition.name,
                instruction=entry.instruction, key=key, misfire=entry.misfire,
                max_runs=entry.max_runs, purpose="schedule in the agent file",
                created_by="agent-file"))
        return timers
