"""Progress: what each agent and task is doing, how far along it is, and since when.

The ``progress`` service listens to the event log and keeps, per task and per agent,
only what it needs to answer "is it moving?" quickly: the time of the last thing it did
and how many times in a row it has made the same tool call. Everything else (states,
steps, tokens, reported progress, recent events) is read from the runtime and the store
when asked, so the service costs a few dictionary entries per running task.

Tasks say how far along they are with ``report_progress(percent, note)``; it is kept in
the task row (``progress``, ``progress_note``) and recorded as a ``task.progress`` event.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wakeful.core.records import Event, TaskRecord
from wakeful.core.states import TaskState
from wakeful.core.timespecs import stamp
from wakeful.errors import WakefulError

if TYPE_CHECKING:
    from wakeful.schedule.host import ScheduleHost

_CALL_EVENTS = frozenset({"tool.call", "tool.error", "tool.refused", "tool.invalid_args",
                          "tool.loop"})
_ENDS = frozenset({"done", "failed", "cancelled"})
_EXCERPT = 200


@dataclass(slots=True)
class Streak:
    """The same tool call (name and arguments) made ``times`` times in a row."""

    tool: str
    arguments: str
    times: int


@dataclass(slots=True)
class Counts:
    started: int = 0
    finished: int = 0


class Progress:
    """The ``progress`` service: reachable as ``runtime.progress``."""

    name = "progress"

    def __init__(self) -> None:
        self._runtime: ScheduleHost | None = None
        self._task_seen: dict[str, float] = {}
        self._agent_seen: dict[str, float] = {}
        self._streaks: dict[str, Streak] = {}
        self._counts: dict[str, Counts] = {}

    async def start(self, runtime: ScheduleHost) -> None:
        self._runtime = runtime
        runtime.events.add_listener(self._on_event)

    async def stop(self) -> None:
        if self._runtime is not None:
            with contextlib.suppress(ValueError):
                self._runtime.events.remove_listener(self._on_event)

    @property
    def runtime(self) -> ScheduleHost:
        if self._runtime is None:
            raise WakefulError("the progress service is not started (start the runtime)")
        return self._runtime

    # what the event log tells ----------------------------------------------
    def _on_event(self, event: Event) -> None:
        kind = event.type
        if kind == "model.token":
            return
        if event.agent is not None:
            self._agent_seen[event.agent] = event.ts
        task = event.task_id
        if task is None:
            return
        if kind in _CALL_EVENTS:
            tool = str(event.data.get("tool"))
            arguments = str(event.data.get("arguments", ""))
            streak = self._streaks.get(task)
            if streak is not None and streak.tool == tool and streak.arguments == arguments:
                streak.times += 1
            else:
                self._streaks[task] = Streak(tool, arguments, 1)
        elif kind == "task.state":
            to = event.data.get("to")
            counts = self._counts.setdefault(event.agent or "", Counts())
            if to == "running" and event.data.get("from") == "queued":
                counts.started += 1
            elif to in _ENDS:
                counts.finished += 1
                self._task_seen.pop(task, None)
                self._streaks.pop(task, None)
                return
        self._task_seen[task] = event.ts

    def last_activity(self, record: TaskRecord) -> float:
        """When the task last did something (an event of its own), as wall time."""
        return self._task_seen.get(record.id) or record.updated_at

    def agent_activity(self, agent: str) -> float | None:
        return self._agent_seen.get(agent)

    def streak(self, task_id: str) -> Streak | None:
        return self._streaks.get(task_id)

    def counts(self, agent: str) -> Counts:
        return self._counts.get(agent, Counts())

    # reporting -------------------------------------------------------------
    async def report(self, task_id: str, percent: float, note: str = "") -> TaskRecord:
        """A task says how far along it is (0-100 percent, and a note)."""
        if not 0 <= percent <= 100:
            raise WakefulError(f"progress is a percentage from 0 to 100, got {percent:g}")
        runtime = self.runtime
        record = await runtime.get_task(task_id)
        if record.state.terminal:
            raise WakefulError(f"task {task_id} is {record.state.value}: it reports no more "
                               "progress")
        record.progress = float(percent)
        record.progress_note = note
        await runtime.store.update_task(task_id, progress=record.progress,
                                        progress_note=note)
        runtime.events.emit("task.progress", agent=record.agent, task_id=task_id,
                            data={"percent": record.progress, "note": note})
        return record

    # status ----------------------------------------------------------------
    async def recent_events(self, *, agent: str | None = None, task_id: str | None = None,
                            limit: int = 5) -> list[str]:
        from wakeful.observe.describe import describe_event

        runtime = self.runtime
        await runtime.store.flush()
        events = await runtime.store.query_events(agent=agent, task_id=task_id, limit=limit,
                                                  newest=True)
        return [f"{stamp(e.ts)} {e.type}" + (f" [{e.task_id}]" if agent and e.task_id else "")
                + f": {describe_event(e)}" for e in events]

    async def task_status(self, task_id: str, *, events: int = 5) -> dict[str, Any]:
        """One task: state, step, progress, last activity, tokens, what it waits for."""
        runtime = self.runtime
        record = await runtime.get_task(task_id)
        data = self._task_summary(record)
        data["instruction"] = record.instruction[:_EXCERPT]
        data["created_at"] = stamp(record.created_at)
        if record.started_at:
            data["started_at"] = stamp(record.started_at)
        if record.finished_at:
            data["finished_at"] = stamp(record.finished_at)
        if record.result:
            data["result"] = record.result[:_EXCERPT]
        if record.error:
            data["error"] = record.error[:_EXCERPT]
        timers = [t.to_dict() for t in runtime.scheduler.of_task(task_id)]
        if timers:
            data["timers"] = timers
        if events:
            data["recent_events"] = await self.recent_events(task_id=task_id, limit=events)
        return data

    def _task_summary(self, record: TaskRecord) -> dict[str, Any]:
        runtime = self.runtime
        now = time.time()
        data: dict[str, Any] = {
            "task_id": record.id, "agent": record.agent, "state": record.state.value,
            "step": record.step, "attempt": record.attempt,
            "tokens": record.input_tokens + record.output_tokens,
            "tool_calls": record.tool_calls}
        if record.progress is not None:
            data["progress"] = record.progress
            if record.progress_note:
                data["progress_note"] = record.progress_note
        if not record.state.terminal and record.state is not TaskState.FAILED:
            last = self.last_activity(record)
            data["last_activity"] = stamp(last)
            data["idle_s"] = round(max(0.0, now - last), 3)
        waiting = runtime.waits.waiting(record.id)
        if waiting is not None:
            data.update(waiting.to_dict())
        streak = self.streak(record.id)
        if streak is not None and streak.times > 1:
            data["repeated_call"] = {"tool": streak.tool,
                                     "arguments": streak.arguments[:_EXCERPT],
                                     "times": streak.times}
        return data

    async def _totals(self) -> dict[str, tuple[int, int, int]]:
        """Per agent: tokens used, tasks finished (done/failed/cancelled), all tasks."""
        totals = await self.runtime.store.agent_totals()
        return {agent: (t.tokens, t.ended, t.tasks) for agent, t in totals.items()}

    async def agent_status(self, name: str, *, events: int = 5,
                           totals: dict[str, tuple[int, int, int]] | None = None
                           ) -> dict[str, Any]:
        """One agent: state, its current tasks, last activity, tokens used, tasks
        started and finished, its next wake-up, and (``events``) what it did last."""
        runtime = self.runtime
        agent = runtime.agent(name)
        if totals is None:
            totals = await self._totals()
        tokens, ended, count = totals.get(name, (0, 0, 0))
        counts = self.counts(name)
        last = self.agent_activity(name)
        data: dict[str, Any] = {
            "agent": name, "state": agent.state.value, "reason": agent.record.reason,
            "last_activity": stamp(last) if last else None,
            "idle_s": round(max(0.0, time.time() - last), 3) if last else None,
            "tokens_used": tokens,
            "tasks": {"total": count, "finished": ended, "running": len(agent.running_tasks),
                      "queued": len(agent.queued_tasks)},
            "this_run": {"started": counts.started, "finished": counts.finished},
            "current_tasks": [self._task_summary(r) for r in agent.running_tasks],
        }
        wake = runtime.scheduler.next_for_agent(name)
        if wake is not None:
            data["next_wake"] = {"at": stamp(wake.next_due), "timer_id": wake.id,
                                 "does": wake.describe_action()}
        if events:
            data["recent_events"] = await self.recent_events(agent=name, limit=events)
        return data

    async def overview(self, agents: list[str], *, events: int = 0) -> list[dict[str, Any]]:
        totals = await self._totals()
        return [await self.agent_status(name, events=events, totals=totals) for name in agents]
