"""The timer record: one row of the ``timers`` table, and its in-memory twin.

One record covers every way something waits on time:

* ``start_task``: a schedule (from an agent file or ``set_schedule``) that starts a
  task with ``instruction`` each time it is due;
* ``wake_agent``: an agent asleep until a time (or an event, in ``conditions``);
* ``wake_task``: a task waiting in ``sleep_for`` / ``sleep_until`` /
  ``wait_for_event``. Its row is the wait itself: ``key`` names the task's step and
  call, ``conditions`` the events it waits for, ``next_due`` its timeout, and
  ``outcome`` how it ended, so a task that resumes after a restart and calls the tool
  again finds the wait it was in (and sleeps only the time that is left), or how it
  ended (and wakes at once with the same message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from wakeful.core.records import Event, TaskRecord
from wakeful.core.timespecs import MisfirePolicy, TimerSpec, stamp

TimerAction = Literal["start_task", "wake_task", "wake_agent"]
TimerState = Literal["active", "done", "cancelled"]

COLUMNS = ("id", "key", "kind", "spec", "timezone", "anchor", "action", "agent", "task_id",
           "instruction", "purpose", "misfire", "max_runs", "state", "next_due", "last_fired",
           "fired", "created_at", "created_by", "conditions", "outcome", "ended_at")


@dataclass(slots=True, eq=False)
class Timer:
    id: str
    key: str | None
    kind: str  # at | every | cron | event (a wait with no time limit)
    spec: str
    timezone: str
    anchor: float
    action: TimerAction
    agent: str | None
    task_id: str | None
    instruction: str | None
    purpose: str
    misfire: MisfirePolicy
    max_runs: int | None
    state: TimerState
    next_due: float | None
    last_fired: float | None
    fired: int
    created_at: float
    created_by: str
    conditions: str | None  # JSON list of the events waited for
    outcome: str | None  # JSON: how a wait ended
    ended_at: float | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Timer:
        return cls(*row)

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)

    @property
    def timer_spec(self) -> TimerSpec | None:
        if self.kind == "event":
            return None
        return TimerSpec(self.kind, self.spec, self.timezone,  # type: ignore[arg-type]
                         self.anchor)

    @property
    def active(self) -> bool:
        return self.state == "active"

    def outcome_data(self) -> dict[str, Any] | None:
        return json.loads(self.outcome) if self.outcome else None

    def condition_data(self) -> list[dict[str, Any]]:
        return json.loads(self.conditions) if self.conditions else []

    def describe_when(self) -> str:
        spec = self.timer_spec
        if spec is None:
            return "no time limit"
        if self.kind == "at":
            return f"at {stamp(self.next_due if self.next_due is not None else float(self.spec))}"
        return spec.describe()

    def describe_action(self) -> str:
        if self.action == "start_task":
            return f"start a task on {self.agent}: {self.instruction}"
        if self.action == "wake_agent":
            return f"wake agent {self.agent}"
        if self.conditions:
            limit = " or its timeout" if self.kind != "event" else ""
            return f"wake task {self.task_id} on {self.purpose}{limit}"
        return f"wake task {self.task_id} (asleep)"

    def to_dict(self) -> dict[str, Any]:
        """As a model or the CLI reads it."""
        data: dict[str, Any] = {
            "timer_id": self.id, "agent": self.agent, "action": self.action,
            "when": self.describe_when(), "state": self.state,
            "next_due": stamp(self.next_due, self.timezone), "misfire": self.misfire,
            "fired": self.fired, "last_fired": stamp(self.last_fired, self.timezone),
            "created_by": self.created_by,
        }
        if self.timezone != "UTC":
            data["timezone"] = self.timezone
        if self.instruction:
            data["instruction"] = self.instruction
        if self.task_id:
            data["task_id"] = self.task_id
        if self.max_runs is not None:
            data["max_runs"] = self.max_runs
        if self.purpose:
            data["purpose"] = self.purpose
        return data


@dataclass(slots=True)
class Claim:
    """One firing to claim: move ``timer`` from ``due`` to ``next_due`` and write what the
    firing does, all or nothing."""

    timer: Timer
    due: float
    next_due: float | None
    fired_at: float
    runs: int  # how many runs it fires now (0: skipped)
    tasks: list[TaskRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
