"""What the mailbox uses of the runtime it serves, and nothing more.

The mailbox is started by the runtime (the composition root, above it) with the
runtime itself; typing that runtime as this protocol keeps the mailbox from importing
it (the layers stay one way), and says exactly what delivery, delegation and the
store watch rely on: the store and event log, the agents' names, the poll interval,
the settle hook, and making, launching and reading tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from wakeful.core.records import TaskRecord
from wakeful.observe.events import EventLog
from wakeful.store.base import Store


class MailHost(Protocol):
    @property
    def store(self) -> Store: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def poll_interval_s(self) -> float: ...

    def agent_names(self) -> Collection[str]: ...

    def on_settle(self, hook: Callable[[TaskRecord], None]) -> None: ...

    def new_task(self, agent: str, instruction: str, *, created_by: str = "api",
                 parent_id: str | None = None, attempt: int = 0,
                 trace_id: str | None = None, cause_id: str | None = None) -> TaskRecord: ...

    def launch_task(self, record: TaskRecord, *, submit: bool = True) -> None: ...

    async def get_task(self, task_id: str) -> TaskRecord: ...
