"""What the schedule services (timers, waits, progress) use of the runtime they serve.

The runtime (the composition root, above them) starts each service with itself;
typing it as :class:`ScheduleHost` keeps ``schedule`` from importing the runtime (the
layers stay one way) and says exactly what timers, waits and progress rely on: the
store and event log, the clock, the other services they watch (mail arriving,
resources coming free), the agents (as :class:`AgentHandle`) and the runtime's own
task operations. ``schedule`` sits above ``mailbox`` and ``resources``, whose
services it names here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from wakeful.core.records import AgentRecord, Fence, TaskRecord
from wakeful.core.states import AgentState
from wakeful.observe.events import EventLog
from wakeful.project.definitions import AgentDefinition
from wakeful.store.base import Store

if TYPE_CHECKING:
    from wakeful.mailbox.service import Mailbox
    from wakeful.resources.manager import ResourceManager
    from wakeful.schedule.clock import Clock
    from wakeful.schedule.timers import Scheduler
    from wakeful.schedule.waits import Waits


class AgentHandle(Protocol):
    """One agent as the schedule services see it: its state, record and tasks."""

    @property
    def name(self) -> str: ...

    @property
    def record(self) -> AgentRecord: ...

    @property
    def fence(self) -> Fence | None: ...

    @property
    def state(self) -> AgentState: ...

    @property
    def running_tasks(self) -> list[TaskRecord]: ...

    @property
    def queued_tasks(self) -> list[TaskRecord]: ...

    async def set_state(self, target: AgentState, reason: str = "") -> None: ...


class ScheduleHost(Protocol):
    @property
    def store(self) -> Store: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def poll_interval_s(self) -> float: ...

    @property
    def mailbox(self) -> Mailbox: ...

    @property
    def resources(self) -> ResourceManager: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def waits(self) -> Waits: ...

    @property
    def agents(self) -> Mapping[str, AgentHandle]: ...

    def agent(self, name: str) -> AgentHandle:
        """The agent named ``name``; UnknownAgentError (naming the known ones) if none."""
        ...

    def definitions(self) -> list[AgentDefinition]: ...

    def on_settle(self, hook: Callable[[TaskRecord], None]) -> None: ...

    def finished(self, record: TaskRecord) -> bool: ...

    def changed(self) -> None: ...

    def new_task(self, agent: str, instruction: str, *, created_by: str = "api",
                 parent_id: str | None = None, attempt: int = 0,
                 trace_id: str | None = None, cause_id: str | None = None) -> TaskRecord: ...

    def launch_task(self, record: TaskRecord, *, submit: bool = True) -> None: ...

    async def get_task(self, task_id: str) -> TaskRecord: ...

    async def wake_agent(self, name: str, reason: str = "woken") -> None: ...
