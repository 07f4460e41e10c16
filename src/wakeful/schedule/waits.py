"""Event waits: sleep until mail comes, a task ends, an agent changes, a resource frees.

A wait is one future. Each event it waits for is registered in a dictionary keyed by
what it is about (a mailbox, a task id, an agent name), and the runtime's own signals
resolve it: the mailbox's arrival hook, the event log's listeners (task and agent state
changes), the runtime's settle hook (a task's final outcome) and the resource layer's
release hook. Whichever comes first wins; a timer (the timeout, or the sleep itself)
is one more way to resolve the same future. Nothing polls, and a sleeping task costs a
future and a few dictionary entries, so thousands of sleepers are cheap.

The one exception is a resource held by *another* process: its release is only seen by
looking at the store again, which the resource watcher does at the lock's lease expiry
and every ``resources.poll_interval_s`` while such a lock is in the way.

A task's wait is also a row of the ``timers`` table (see
:mod:`wakeful.core.timers`), keyed by the task, its step and the call, so that a
task resumed after a restart sleeps only the time that is left, or, if its wait had
already ended, wakes at once with the same message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from wakeful.core.conditions import (
    Condition,
    WaitInfo,
    Who,
    condition_of,
    describe_all,
    parse_events,
    spec_of,
)
from wakeful.core.states import AgentState
from wakeful.core.timers import Timer
from wakeful.core.timespecs import TimerSpec, stamp
from wakeful.core.wake import Wake, describe_event
from wakeful.errors import ScheduleError, WakefulError
from wakeful.schedule.signals import WaitsBase, log

if TYPE_CHECKING:
    from wakeful.schedule.host import ScheduleHost

__all__ = ["Condition", "PendingWait", "Waits"]  # Condition: the runtime's import


@dataclass(slots=True, eq=False)
class PendingWait:
    """A wait that is set up (stored, for a task) and not yet waited on."""

    waits: Waits
    who: Who
    conditions: list[Condition]
    until: float | None
    timer: Timer | None
    ended: Wake | None = None  # already over (before a restart): how it ended
    since: float = 0.0

    @property
    def waiting_for(self) -> str:
        return describe_all(self.conditions) if self.conditions else "time"

    def describe(self) -> str:
        """The reason a waiting task shows (``wakeful why``, status views)."""
        timer = f" (timer {self.timer.id})" if self.timer is not None else ""
        if not self.conditions:
            return f"sleeping until {stamp(self.until)}{timer}"
        limit = f"; timeout at {stamp(self.until)}" if self.until is not None else ""
        return f"waiting for {self.waiting_for}{limit}{timer}"

    async def wait(self) -> Wake:
        if self.ended is not None:
            # It ended while the task was not waiting on it (its timer fired as this
            # process started, or before a crash that undid the step): the wake-up is
            # recorded here, marked resumed, so the event log shows every one.
            return self.waits._woke(self.who, self.ended)
        return await self.waits._wait(self)


class Waits(WaitsBase):
    """The ``waits`` service: reachable as ``runtime.waits``."""

    name = "waits"

    # lifecycle -------------------------------------------------------------
    async def start(self, runtime: ScheduleHost) -> None:
        self._runtime = runtime
        runtime.mailbox.on_arrival(self._on_mail)
        runtime.events.add_listener(self._on_event)
        runtime.on_settle(self._on_settle)
        runtime.resources.on_change(self._on_resources)

    def begin(self) -> None:
        """Re-arm the event waits of agents asleep since before a restart."""
        runtime = self.runtime
        for timer in runtime.scheduler.active():
            if timer.action == "wake_agent" and timer.conditions and timer.agent:
                try:
                    conditions = [condition_of(s) for s in parse_events(
                        timer.condition_data())]
                except WakefulError as exc:
                    log.error("cannot re-arm an agent's wait", agent=timer.agent,
                              error=str(exc))
                    continue
                self._arm_agent(timer.agent, timer, conditions)

    async def stop(self) -> None:
        await self._scope.aclose()
        self._agent_sleeps.clear()
        if self._runtime is not None:
            with contextlib.suppress(ValueError):
                self._runtime.events.remove_listener(self._on_event)

    # status ----------------------------------------------------------------
    def waiting(self, task_id: str) -> WaitInfo | None:
        """What this task waits for in ``sleep_for`` / ``sleep_until`` /
        ``wait_for_event``, if it does."""
        return self._current.get(task_id)

    def sleepers(self) -> int:
        return len(self._current)

    # waiting ---------------------------------------------------------------
    async def prepare(
        self,
        who: Who,
        conditions: Sequence[Condition] = (),
        *,
        until: float | None = None,
        key: str | None = None,
        purpose: str = "",
    ) -> PendingWait:
        """Set up a wait for the first of ``conditions``, or until ``until`` (epoch
        seconds on the runtime's clock): a timeout when there are conditions, the
        wake-up itself when there are none. Then ``await pending.wait()``.

        For a task (``who.task_id``) with a ``key``, the wait is stored: prepared again
        with the same key (a task resumed after a restart, redoing its step), it goes on
        for the time that is left, or is already over (``pending.ended``) with the wake-up
        it ended with.
        """
        if not conditions and until is None:
            raise ScheduleError("nothing to wait for: give events, a time, or both")
        for condition in conditions:
            await self._validate(condition)
        runtime = self.runtime
        timer: Timer | None = None
        if who.task_id is not None and key is not None:
            what = describe_all(conditions) if conditions else "time"
            timer = await runtime.scheduler.add(
                TimerSpec.at(until) if until is not None else None, "wake_task",
                agent=who.agent, task_id=who.task_id, key=key, purpose=what,
                created_by=who.reader,
                conditions=json.dumps([spec_of(c) for c in conditions]) if conditions
                else None)
            if not timer.active:
                ended = timer.outcome_data()
                if ended is not None and ended.get("reason") in ("timer", "event", "timeout"):
                    return PendingWait(self, who, list(conditions), until, timer,
                                       Wake.from_record(ended, resumed=True))
                timer = None  # cancelled with its task once: this is a new wait
            else:
                until = timer.next_due  # resumed: the time that is left
        since = timer.created_at if timer is not None else runtime.clock.now()
        return PendingWait(self, who, list(conditions), until, timer, None, since)

    async def wait(self, who: Who, conditions: Sequence[Condition] = (), *,
                   until: float | None = None, key: str | None = None) -> Wake:
        """:meth:`prepare` and wait, in one call."""
        return await (await self.prepare(who, conditions, until=until, key=key)).wait()

    async def _wait(self, pending: PendingWait) -> Wake:
        runtime = self.runtime
        clock = runtime.clock
        who, conditions, timer, until = pending.who, pending.conditions, pending.timer, \
            pending.until
        since = pending.since
        what = pending.waiting_for
        future: asyncio.Future[Wake] = asyncio.get_running_loop().create_future()

        def resolve(wake: Wake) -> None:
            if not future.done():
                future.set_result(wake)

        def on_event(event: dict[str, Any]) -> None:
            resolve(Wake("event", clock.now(), since, event=event, waited_for=what))

        if timer is not None and not runtime.scheduler.on_fire(timer.id, resolve):
            ended = timer.outcome_data()  # it fired while the task was getting ready
            if ended is not None and ended.get("reason") in ("timer", "timeout"):
                return self._woke(who, Wake.from_record(ended))
            raise ScheduleError(f"timer {timer.id} is not active in this runtime")
        unregister = [self._register(c, who, on_event) for c in conditions]
        handle = None
        if timer is None and until is not None:
            reason: Literal["timer", "timeout"] = "timeout" if conditions else "timer"
            handle = clock.call_at(until, lambda: resolve(Wake(
                reason, clock.now(), since, due=until, waited_for=what)))
        if who.task_id is not None:
            self._current[who.task_id] = WaitInfo(
                who.task_id, who.agent, pending.describe(), since, until,
                timer.id if timer else None)
        try:
            for condition in conditions:
                happened = await self._happened(condition, who)
                if happened is not None:
                    on_event(happened)
                    break
            wake = await future
        finally:
            for undo in unregister:
                undo()
            if timer is not None:
                runtime.scheduler.off_fire(timer.id)
            if handle is not None:
                handle.cancel()
            if who.task_id is not None:
                self._current.pop(who.task_id, None)
        if timer is not None and wake.reason == "event":
            runtime.scheduler.end_wait(timer, "done", wake.record())
        return self._woke(who, wake)

    def _woke(self, who: Who, wake: Wake) -> Wake:
        self.woken += 1
        if who.task_id is not None:
            late = None if wake.due is None or wake.reason == "event" else round(
                (wake.at - wake.due) * 1000, 3)
            self.runtime.events.emit("task.woke", agent=who.agent, task_id=who.task_id, data={
                "reason": wake.reason, "timer_id": wake.timer_id, "event": wake.event,
                "slept_s": None if wake.slept_s is None else round(wake.slept_s, 3),
                "late_ms": late, **({"resumed": True} if wake.resumed else {})})
        return wake

    # agents asleep ---------------------------------------------------------
    async def sleep_agent(self, name: str, reason: str = "asleep", *,
                          until: float | None = None,
                          wake_on: Iterable[Condition] = ()) -> None:
        runtime = self.runtime
        agent = runtime.agent(name)
        conditions = list(wake_on)
        for condition in conditions:
            await self._validate(condition)
        await self._end_agent_sleep(name, "it was put to sleep again")
        text = reason
        timer = None
        if until is not None or conditions:
            timer = await runtime.scheduler.add(
                TimerSpec.at(until) if until is not None else None, "wake_agent", agent=name,
                purpose=reason, created_by="api",
                conditions=json.dumps([spec_of(c) for c in conditions]) if conditions
                else None)
            wakes = ([f"until {stamp(until)}"] if until is not None else []) + (
                [f"until {describe_all(conditions)}"] if conditions else [])
            text = f"{reason} ({' or '.join(wakes)}; timer {timer.id})"
        if agent.state is AgentState.SLEEPING:  # asleep already: a new wake-up, same sleep
            agent.record.reason = text
            agent.record.updated_at = time.time()
            await runtime.store.save_agent(agent.record, agent.fence)
            runtime.events.emit("agent.sleep_changed", agent=name, data={"reason": text})
            runtime.changed()
        else:
            await agent.set_state(AgentState.SLEEPING, text)
        if timer is not None and conditions:
            self._arm_agent(name, timer, conditions)

    def _arm_agent(self, name: str, timer: Timer, conditions: list[Condition]) -> None:
        self._agent_sleeps[name] = self._scope.spawn(
            self._agent_wait(name, timer, conditions), name=f"waits:agent:{name}")

    async def _agent_wait(self, name: str, timer: Timer, conditions: list[Condition]) -> None:
        try:
            wake = await self.wait(Who(name), conditions)
        except WakefulError as exc:
            log.error("an agent's wait failed", agent=name, error=str(exc))
            return
        finally:
            if self._agent_sleeps.get(name) is asyncio.current_task():
                del self._agent_sleeps[name]
        agent = self.runtime.agents.get(name)
        if agent is not None and agent.state is AgentState.SLEEPING:
            await self.wake_agent(name, f"woken: {describe_event(wake.event or {})}")

    async def _end_agent_sleep(self, name: str, why: str) -> None:
        runtime = self.runtime
        for timer in runtime.scheduler.active():
            if timer.action == "wake_agent" and timer.agent == name:
                await runtime.scheduler.cancel(timer.id, why)
        task = self._agent_sleeps.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def wake_agent(self, name: str, reason: str = "woken") -> None:
        agent = self.runtime.agent(name)
        await self._end_agent_sleep(name, f"the agent was woken ({reason})")
        await agent.set_state(AgentState.RUNNING, reason)
