"""The store interface: everything that must survive a killed process.

The runtime talks only to this interface. Implementations must make each awaited
write durable against a process crash before it returns, because crash recovery
(resume a task from its last completed step) relies on exactly that.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Any

from wakeful.runtime.states import TaskState
from wakeful.store.records import AgentRecord, Event, RunRecord, TaskRecord


class Store(abc.ABC):
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create the schema, apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release connections."""

    # runs --------------------------------------------------------------
    @abc.abstractmethod
    async def begin_run(self, run: RunRecord) -> bool:
        """Record a run; return True when it is the first run this store has seen."""

    @abc.abstractmethod
    async def end_run(self, run_id: str, ended_at: float) -> None: ...

    @abc.abstractmethod
    async def latest_run(self) -> RunRecord | None: ...

    # agents ------------------------------------------------------------
    @abc.abstractmethod
    async def save_agent(self, record: AgentRecord) -> None: ...

    @abc.abstractmethod
    async def load_agents(self) -> dict[str, AgentRecord]: ...

    # tasks -------------------------------------------------------------
    @abc.abstractmethod
    async def create_task(self, record: TaskRecord) -> None: ...

    @abc.abstractmethod
    async def update_task(self, task_id: str, **fields: Any) -> None: ...

    @abc.abstractmethod
    async def get_task(self, task_id: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    async def list_tasks(
        self,
        agent: str | None = None,
        states: Iterable[TaskState] | None = None,
        limit: int | None = None,
        created_after: str | None = None,
    ) -> list[TaskRecord]:
        """Tasks, oldest first; ``created_after`` is an exclusive task-id watermark."""

    @abc.abstractmethod
    async def count_tasks(self) -> dict[tuple[str, TaskState], int]:
        """How many tasks each agent has in each state."""

    @abc.abstractmethod
    async def tasks_caused_by(self, cause_id: str, agent: str | None = None
                              ) -> list[TaskRecord]:
        """Tasks started because of ``cause_id`` (a mail, a timer, a task)."""

    @abc.abstractmethod
    async def child_tasks(self, parent_ids: Iterable[str]) -> list[TaskRecord]:
        """Tasks whose parent is one of ``parent_ids`` (oldest first)."""

    @abc.abstractmethod
    async def save_step(
        self, task_id: str, first_seq: int, messages: Sequence[dict[str, Any]], **fields: Any
    ) -> None:
        """Append conversation messages and update the task row in one transaction."""

    @abc.abstractmethod
    async def load_messages(self, task_id: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def requeue_interrupted(self) -> list[str]:
        """Put tasks a dead process left running or waiting back in the queue."""

    # events ------------------------------------------------------------
    @abc.abstractmethod
    def append_event(self, event: Event) -> None:
        """Queue an event for the next commit; does not wait for it."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""

    @abc.abstractmethod
    async def query_events(
        self,
        *,
        agent: str | None = None,
        task_id: str | None = None,
        types: Iterable[str] | None = None,
        type_prefix: str | None = None,
        correlation_id: str | None = None,
        after_id: int = 0,
        limit: int = 1000,
        newest: bool = False,
    ) -> list[Event]:
        """Events in id order; ``newest`` picks the last ``limit`` (still in id order)."""
