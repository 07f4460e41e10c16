"""What a tool sees of the world when a task calls it.

A :class:`ToolContext` is made per task and holds only that task's identity and its
private ``scratch`` space; tasks never share one. Anything a tool does beyond its own
task goes through a capability the context hands out: ``mail`` (the mailbox),
``resources`` (files, locks, the scratchpad), ``timers``, ``waits``, ``clock``,
``progress`` and ``team`` (agents, tasks, the event log, control actions), each an
explicit, recorded operation typed by a protocol of :mod:`wakeful.toolkit.capabilities`.
``runtime`` is what the context is made from, seen through :class:`ToolHost` (the task
loop and tests use it); tools do not reach through it (a test checks that). Living
below the services, the context lets their tools (and the resource manager's
auto-pause) take one without importing the runtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from wakeful.core.records import TaskRecord
from wakeful.observe.events import EventLog
from wakeful.toolkit.capabilities import (
    Clock,
    MailCapability,
    ProgressCapability,
    ResourceCapability,
    TeamCapability,
    TimerCapability,
    WaitCapability,
)


class ToolHost(Protocol):
    """What a context is made from: the runtime's capabilities (read-only)."""

    @property
    def mailbox(self) -> MailCapability: ...

    @property
    def resources(self) -> ResourceCapability: ...

    @property
    def scheduler(self) -> TimerCapability: ...

    @property
    def waits(self) -> WaitCapability: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def progress(self) -> ProgressCapability: ...

    @property
    def events(self) -> EventLog: ...

    def team(self) -> TeamCapability:
        """The team as one tool call sees it (cheap to make)."""
        ...


class LoopHandle(Protocol):
    """The task loop running the call: its record, and its waiting state."""

    @property
    def record(self) -> TaskRecord: ...

    @property
    def interrupted(self) -> bool: ...

    async def wait_begin(self, reason: str) -> None: ...

    async def wait_end(self) -> None: ...


def caller_address(ctx: ToolContext) -> str:
    """The calling task's address (``agent/task_id``): who did what, in records."""
    return f"{ctx.agent}/{ctx.task_id}"


@dataclass
class ToolContext:
    agent: str
    task_id: str
    runtime: ToolHost = field(repr=False)
    scratch: dict[str, Any] = field(default_factory=dict)
    loop: LoopHandle | None = field(default=None, repr=False)
    # Like scratch, but never saved: it lives as long as this run of the task (a task
    # resumed after a restart starts with an empty one).
    local: dict[str, Any] = field(default_factory=dict, repr=False)
    # Which call of the model's reply is running (0, 1, ...): with the task and its
    # step, the key that makes a repeated call (a resumed task) find its first effect.
    call_index: int = 0
    # Store changes (mail acks) to commit in the same transaction as the result of the
    # call that made them.
    _changes: list[Any] = field(default_factory=list, repr=False)

    # capabilities ----------------------------------------------------------
    @property
    def mail(self) -> MailCapability:
        return self.runtime.mailbox

    @property
    def resources(self) -> ResourceCapability:
        return self.runtime.resources

    @property
    def timers(self) -> TimerCapability:
        return self.runtime.scheduler

    @property
    def waits(self) -> WaitCapability:
        return self.runtime.waits

    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    @property
    def progress(self) -> ProgressCapability:
        return self.runtime.progress

    @property
    def team(self) -> TeamCapability:
        return self.runtime.team()

    def commit_with_result(self, change: Any) -> None:
        """Commit ``change`` together with the result of the running tool call."""
        self._changes.append(change)

    def take_changes(self) -> list[Any]:
        changes, self._changes = self._changes, []
        return changes

    def emit(self, type: str, **data: Any) -> None:
        """Record an event attributed to this task."""
        self.runtime.events.emit(type, agent=self.agent, task_id=self.task_id, data=data)

    @asynccontextmanager
    async def waiting(self, reason: str) -> AsyncIterator[None]:
        """Mark the task as waiting (for mail, a timer, a lock...) while the body runs.

        Status views and the event log then say what the task is blocked on; the task
        is back to running when the body ends, however it ends.
        """
        if self.loop is None:
            yield
            return
        await self.loop.wait_begin(reason)
        try:
            yield
        finally:
            await self.loop.wait_end()
