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
  more than :data:`MISFIRE_GRACE_S` late) follows its misfire policy: ``once`` (the
  default) fires once now for all the runs it missed, ``skip`` drops them and waits for
  the next due time, ``all`` fires each missed run (at most :data:`MAX_CATCH_UP`).
* **Sleeping tasks** (``wake_task`` timers) are woken the moment their timer is due;
  that the wait ended is written right after (it is ordered before the task's next
  step in the store's single writer), so the wake-up is not held up by a commit.

Agent schedules (``schedule:`` in an agent file) are registered at start under a key
made from the entry, so a restart does not register them twice; an entry removed from
the file cancels its timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from wakeful.core.states import AgentState
from wakeful.core.timers import Claim, Timer, TimerAction
from wakeful.core.timespecs import MisfirePolicy, TimerSpec, stamp, to_timestamp
from wakeful.errors import ScheduleError, WakefulError
from wakeful.ids import new_id
from wakeful.project.definitions import AgentDefinition, ScheduleEntry
from wakeful.runtime.scope import TaskScope
from wakeful.schedule.clock import Clock, Handle
from wakeful.schedule.wake import Wake
from wakeful.store.timers import TimerStore

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime

log = structlog.get_logger("wakeful.schedule")

MISFIRE_GRACE_S = 1.0
"""A run more than this late counts as missed (its timer's misfire policy applies)."""
MAX_CATCH_UP = 1000
"""Under misfire policy ``all``, at most this many missed runs fire at once."""
BATCH = 5000
"""At most this many due timers are handled in one round (one transaction)."""
RETRY_AFTER_S = 1.0

WakeCallback = Callable[[Wake], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What one due timer does now: the runs it fires and when it is due next."""

    runs: list[float]  # due times fired now
    next_due: float | None
    missed: int  # runs that came due and are not fired (skip, once)


def plan(timer: Timer, now: float) -> Plan:
    """Apply the timer's misfire policy to the runs that are due at ``now``."""
    spec = timer.timer_spec
    assert spec is not None and timer.next_due is not None
    due_runs = [timer.next_due]
    following = spec.next_after(timer.next_due)
    while following is not None and following <= now and len(due_runs) < MAX_CATCH_UP:
        due_runs.append(following)
        following = spec.next_after(following)
    if following is not None and following <= now:  # beyond the catch-up bound
        following = spec.next_after(now)
    policy: MisfirePolicy = timer.misfire
    if policy == "all":
        runs = due_runs
    elif policy == "once":
        runs = [due_runs[-1]]
    else:  # skip: only a run that is on time fires, and none once several piled up
        on_time = len(due_runs) == 1 and now - due_runs[0] <= MISFIRE_GRACE_S
        runs = due_runs if on_time else []
    if timer.max_runs is not None:
        left = max(0, timer.max_runs - timer.fired)
        runs = runs[:left]
        if timer.fired + len(runs) >= timer.max_runs:
            following = None
    return Plan(runs, following, len(due_runs) - len(runs))


def schedule_spec(entry: ScheduleEntry, now: float) -> TimerSpec:
    """The timer of a ``schedule:`` entry (an interval is counted from ``now``)."""
    if entry.every is not None:
        return TimerSpec.every(entry.every, now, entry.timezone)
    if entry.cron is not None:
        return TimerSpec.cron(entry.cron, entry.timezone)
    assert entry.at is not None
    return TimerSpec.at(to_timestamp(entry.at, entry.timezone), entry.timezone)


def _entry_keys(definition: AgentDefinition) -> dict[str, ScheduleEntry]:
    keys: dict[str, ScheduleEntry] = {}
    for entry in definition.schedule:
        digest = hashlib.sha256(entry.model_dump_json().encode()).hexdigest()[:16]
        n = 0
        while f"schedule:{definition.name}:{digest}:{n}" in keys:
            n += 1
        keys[f"schedule:{definition.name}:{digest}:{n}"] = entry
    return keys


class Scheduler:
    """The ``scheduler`` service: reachable as ``runtime.scheduler``."""

    name = "scheduler"

    def __init__(self, *, agent_schedules: bool = True) -> None:
        # False: do not register the agents' ``schedule:`` entries (replay does this:
        # the runs they started are replayed from the recording instead).
        self.agent_schedules = agent_schedules
        self._runtime: Runtime | None = None
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

    # lifecycle -----------------------------------------------------------
    async def start(self, runtime: Runtime) -> None:
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

    async def stop(self) -> None:
        await self._scope.aclose()
        self._loop = None
        self._parked.set()
        self._callbacks.clear()

    @property
    def runtime(self) -> Runtime:
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
        if timer.task_id is not None:
            ids = self._by_task.get(timer.task_id)
            if ids is not None:
                ids.discard(timer.id)
                if not ids:
                    del self._by_task[timer.task_id]

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

    # firing ----------------------------------------------------------------
    def _wake_loop(self) -> None:
        self._parked.clear()
        kick = self._kick
        if kick is not None and not kick.done():
            kick.set_result(None)

    async def settle(self) -> None:
        """Return once every timer due by now has been handled (tests, with a fake
        clock: see :meth:`FakeClock.on_advance`)."""
        if self._loop is None or self._loop.done():
            return
        await self._parked.wait()

    def _take_due(self, now: float) -> list[Timer]:
        due: list[Timer] = []
        heap = self._heap
        while heap and heap[0][0] <= now and len(due) < BATCH:
            when, _, timer_id = heapq.heappop(heap)
            timer = self._timers.get(timer_id)
            if timer is not None and timer.active and timer.next_due == when:
                due.append(timer)
        return due

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self.clock
        while True:
            now = clock.now()
            due = self._take_due(now)
            if due:
                self.firing = True
                try:
                    await self._fire(due, now)
                except Exception as exc:  # the store failed: try these again shortly
                    log.error("timers could not fire; retrying", error=repr(exc),
                              timers=len(due))
                    await asyncio.sleep(RETRY_AFTER_S)
                    for timer in due:
                        if timer.active and timer.next_due is not None:
                            self._push(timer)
                finally:
                    self.firing = False
                    self.runtime.changed()
                continue
            kick = self._kick = loop.create_future()
            handle: Handle | None = None
            if self._heap:
                self._armed_for = self._heap[0][0]
                handle = clock.call_at(self._armed_for, self._wake_loop)
            else:
                self._armed_for = math.inf
            self._parked.set()
            try:
                await kick
            finally:
                if handle is not None:
                    handle.cancel()
                self._armed_for = math.inf

    async def _fire(self, due: list[Timer], now: float) -> None:
        waits = [t for t in due if t.action == "wake_task"]
        if waits:
            self._fire_waits(waits, now)
        schedules = [t for t in due if t.action != "wake_task"]
        if schedules:
            await self._fire_schedules(schedules, now)

    def _fire_waits(self, timers: list[Timer], now: float) -> None:
        """Wake the tasks sleeping on these timers, then record that their waits ended."""
        ended = []
        for timer in timers:
            wake = Wake(reason="timeout" if timer.conditions else "timer", at=now,
                        since=timer.created_at, timer_id=timer.id, due=timer.next_due,
                        waited_for=timer.purpose or None)
            timer.state = "done"
            timer.fired += 1
            timer.last_fired = now
            timer.next_due = None
            timer.ended_at = now
            timer.outcome = json.dumps(wake.record())
            ended.append((timer.id, "done", timer.outcome, now))
            self._forget(timer)
            callback = self._callbacks.pop(timer.id, None)
            if callback is not None:
                callback(wake)
        self.fired += len(timers)
        self.store.end_waits_nowait(ended)

    async def _fire_schedules(self, timers: list[Timer], now: float) -> None:
        runtime = self.runtime
        claims: list[Claim] = []
        for timer in timers:
            steps = plan(timer, now)
            claim = Claim(timer, timer.next_due or now, steps.next_due, now, len(steps.runs))
            known = timer.agent is not None and timer.agent in runtime.agents
            if timer.action == "start_task" and steps.runs and not known:
                claim.runs = 0
                reason = f"agent {timer.agent!r} does not exist (any more)"
            else:
                reason = ""
            if timer.action == "start_task" and claim.runs:
                for _ in steps.runs:
                    claim.tasks.append(runtime.new_task(
                        timer.agent or "", timer.instruction or "", created_by="schedule",
                        cause_id=timer.id))
            data: dict[str, Any] = {
                "timer_id": timer.id, "action": timer.action, "due": stamp(claim.due),
                "late_ms": round((now - claim.due) * 1000, 3), "runs": claim.runs,
                "dues": [stamp(r) for r in steps.runs[:claim.runs]],
                "missed": steps.missed, "misfire": timer.misfire,
                "next_due": stamp(steps.next_due)}
            if claim.tasks:
                data["task_ids"] = [t.id for t in claim.tasks]
            if reason:
                data["reason"] = reason
            kind = "timer.fired" if claim.runs else "timer.skipped"
            claim.events.append(runtime.events.make(
                kind, agent=timer.agent, data=data,
                causation_id=timer.id,
                correlation_id=claim.tasks[0].trace_id if claim.tasks else None))
            claims.append(claim)
        won = await self.store.claim_firings(claims)
        for claim, ok in zip(claims, won, strict=True):
            timer = claim.timer
            if not ok:  # another process fired (or cancelled) it: take it as it is now
                self._forget(timer)
                fresh = await self.store.get(timer.id)
                if fresh is not None and fresh.active:
                    self._remember(fresh)
                continue
            timer.next_due = claim.next_due
            timer.fired += claim.runs
            if claim.runs:
                timer.last_fired = now
            self.fired += claim.runs
            if claim.next_due is None:
                timer.state = "done"
                timer.ended_at = now
                self._forget(timer)
            else:
                self._push(timer)
            for event in claim.events:
                runtime.events.publish(event)
            for record in claim.tasks:
                runtime.launch_task(record)
            if claim.runs and timer.agent is not None:
                await self._wake_agent(timer)

    async def _wake_agent(self, timer: Timer) -> None:
        """A schedule or a wake-up timer of a sleeping agent wakes it."""
        agent = self.runtime.agents.get(timer.agent or "")
        if agent is None or agent.state is not AgentState.SLEEPING:
            return
        what = "schedule" if timer.action == "start_task" else "timer"
        with contextlib.suppress(WakefulError):
            await self.runtime.wake_agent(agent.name, f"woken by {what} {timer.id}")
