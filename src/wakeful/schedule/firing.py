"""Firing: one sleeper wakes at the earliest due time, wakes the tasks whose waits are
due, and claims schedules' firings in the store with the tasks they start (exactly
once; see :mod:`wakeful.schedule.timers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import math
from typing import Any

import structlog

from wakeful.core.states import AgentState
from wakeful.core.timers import Claim, Timer
from wakeful.core.timespecs import stamp
from wakeful.core.wake import Wake
from wakeful.errors import WakefulError
from wakeful.schedule.clock import Handle
from wakeful.schedule.plans import plan
from wakeful.schedule.table import TimerTable

log = structlog.get_logger("wakeful.schedule")

BATCH = 5000
"""At most this many due timers are handled in one round (one transaction)."""
RETRY_AFTER_S = 1.0


class Firing(TimerTable):
    """The scheduler's firing loop."""

    # firing ----------------------------------------------------------------
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
