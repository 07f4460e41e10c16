"""The store interface: everything that must survive a killed process.

The runtime talks only to this interface. Implementations must make each awaited
write durable against a process crash before it returns, because crash recovery
(resume a task from its last completed step) relies on exactly that.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from wakeful.core.records import (
    AgentGrant,
    AgentRecord,
    AgentTotals,
    Event,
    Fence,
    RunRecord,
    TaskRecord,
)
from wakeful.store.bells import Bells

if TYPE_CHECKING:
    from wakeful.store.locks import LockStore
    from wakeful.store.mail import MailStore
    from wakeful.store.timers import TimerStore
from wakeful.core.states import TaskState
from wakeful.errors import StoreError


def step_hole(task_id: str, first_seq: int) -> StoreError:
    """The error of a step that would leave a hole in its task's conversation."""
    return StoreError(f"step of task {task_id}: message {first_seq - 1} is not stored "
                      f"(an earlier write of this task failed), so messages from "
                      f"{first_seq} on were not stored either")


class Store(abc.ABC):
    """The runs, tasks, events, agents and leases families; the mail, locks and timers
    families are reached through :meth:`mail`, :meth:`locks` and :meth:`timers` (ports
    of their own, in the same database, so that one transaction can span families)."""

    _bells: Bells | None = None

    @property
    def bells(self) -> Bells:
        """This process's doorbells: rung when a commit may interest a listener (by
        this process, and on backends with notifications, by any process)."""
        if self._bells is None:
            self._bells = Bells()
        return self._bells

    @property
    def notifies(self) -> bool:
        """Does this store hear other processes' commits (so polls may be rare)?"""
        return False

    @abc.abstractmethod
    def mail(self) -> MailStore:
        """The mail family of this store."""

    @abc.abstractmethod
    def locks(self) -> LockStore:
        """The locks and shared scratchpad family of this store."""

    @abc.abstractmethod
    def timers(self) -> TimerStore:
        """The timers and waits family of this store."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create the schema, apply pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release connections."""

    # runs --------------------------------------------------------------
    @abc.abstractmethod
    async def begin_run(self, run: RunRecord, first_tasks: Sequence[TaskRecord] = ()) -> bool:
        """Record a run; return True when it is the first run this store has seen, and
        then store ``first_tasks`` (the startup tasks) in the same transaction, so that
        a worker killed just after its first start leaves them to the next one."""

    @abc.abstractmethod
    async def end_run(self, run_id: str, ended_at: float) -> None: ...

    @abc.abstractmethod
    async def latest_run(self) -> RunRecord | None: ...

    @abc.abstractmethod
    async def list_runs(self) -> list[RunRecord]:
        """Every run, oldest first."""

    # agents ------------------------------------------------------------
    @abc.abstractmethod
    async def save_agent(self, record: AgentRecord, fence: Fence | None = None) -> None:
        """Store an agent's lifecycle state; with ``fence``, only while that lease holds
        (else FenceError, and nothing is written)."""

    @abc.abstractmethod
    async def load_agents(self) -> dict[str, AgentRecord]: ...

    # tasks -------------------------------------------------------------
    @abc.abstractmethod
    async def create_task(self, record: TaskRecord, mail: Sequence[Any] = ()) -> None:
        """Store a new task, durably, with ``mail`` (mailbox changes: a delegation) in
        the same transaction: both or neither."""

    @abc.abstractmethod
    async def update_task(self, task_id: str, fence: Fence | None = None, *,
                          expect_state: str | Sequence[str] | None = None, **fields: Any
                          ) -> bool:
        """Change a task's fields; with ``fence``, only while that agent lease holds
        (else FenceError, and nothing is written); with ``expect_state``, only if the
        task is in that state. Returns whether a row changed."""

    @abc.abstractmethod
    async def claim_task(self, task_id: str, fence: Fence,
                         opening: Sequence[dict[str, Any]] = (),
                         started_at: float | None = None) -> tuple[TaskRecord, bool] | None:
        """Start a run of a queued task: queued -> running, owner = the fence's worker,
        only if it is still queued and the fence holds. Exactly one claim wins and gets
        the task as stored and whether it ran before (resumed); the losers get None
        (someone else runs it, or it was cancelled). A task that never ran gets its
        ``opening`` messages and ``started_at`` (default: now) in the same transaction."""

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
    async def agent_totals(self, agent: str | None = None) -> dict[str, AgentTotals]:
        """Per agent (or for one): its tasks, how many ended, tokens, cost, tool calls."""

    @abc.abstractmethod
    async def unanswered(self, agents: Collection[str]) -> list[TaskRecord]:
        """Tasks of ``agents`` started to answer a person's mail (created by a person,
        caused by the mail) that have ended, but whose answer (mail from the agent with
        the idempotency key ``answer:TASK``) was never stored: their worker stopped in
        between."""

    @abc.abstractmethod
    async def tasks_caused_by(self, cause_id: str, agent: str | None = None
                              ) -> list[TaskRecord]:
        """Tasks started because of ``cause_id`` (a mail, a timer, a task)."""

    @abc.abstractmethod
    async def child_tasks(self, parent_ids: Iterable[str]) -> list[TaskRecord]:
        """Tasks whose parent is one of ``parent_ids`` (oldest first)."""

    async def save_step(
        self, task_id: str, first_seq: int, messages: Sequence[dict[str, Any]], *,
        fence: Fence | None = None, mail: Sequence[Any] = (), **fields: Any
    ) -> None:
        """Store conversation messages from ``first_seq`` on, update the task row and
        apply ``mail`` (acks of the mail this step took) in one transaction, fenced;
        durable on return. See :meth:`queue_step`."""
        await self.queue_step(task_id, first_seq, messages, fence=fence, mail=mail, **fields)

    @abc.abstractmethod
    def queue_step(
        self, task_id: str, first_seq: int, messages: Sequence[dict[str, Any]], *,
        fence: Fence | None = None, mail: Sequence[Any] = (), **fields: Any
    ) -> asyncio.Future[None]:
        """Queue :meth:`save_step`'s write now, before this call returns, and return a
        future that resolves once it is durable (or fails). Writes are applied in the
        order they were queued, so a task can go on (call its model) while its last
        tool result is being committed, and queue its next step behind it.

        A conversation never has a hole: a step whose ``first_seq`` is not 0 is refused
        (a :class:`~wakeful.errors.StoreError`) unless message ``first_seq - 1`` is
        stored, so if an earlier queued step failed, or its commit's outcome is unknown
        and it did not land, the step queued after it lands nothing either."""

    @abc.abstractmethod
    async def load_messages(self, task_id: str) -> list[dict[str, Any]]: ...

    # workers and agent leases --------------------------------------------
    @abc.abstractmethod
    async def heartbeat(self, worker: str, pid: int, host: str, lease_s: float) -> int:
        """Record that ``worker`` lives for ``lease_s`` more seconds (store's clock);
        return how many workers live."""

    @abc.abstractmethod
    async def acquire_agents(self, worker: str, agents: Sequence[str], lease_s: float,
                             limit: int) -> list[AgentGrant]:
        """Take up to ``limit`` agents no live worker owns (compare-and-set on the
        epoch, raised by one); requeue their interrupted tasks in the same transaction."""

    @abc.abstractmethod
    async def renew_agents(self, worker: str, held: dict[str, int], lease_s: float
                           ) -> list[str]:
        """Extend the leases held (agent -> epoch); return those no longer held."""

    @abc.abstractmethod
    async def release_agents(self, worker: str, held: dict[str, int]) -> list[str]:
        """Give leases up now, requeueing what their agents left running; returns the
        requeued task ids."""

    @abc.abstractmethod
    async def retire_worker(self, worker: str) -> None: ...

    @abc.abstractmethod
    async def request_command(self, agent: str, command: str,
                              argument: str | None = None) -> None:
        """Ask whichever worker owns ``agent`` to carry out ``command`` (durable)."""

    @abc.abstractmethod
    async def take_commands(self, agents: Collection[str]
                            ) -> list[tuple[str, str, str | None]]:
        """Take the open commands for ``agents`` (agent, command, argument), oldest
        first; each command is taken by exactly one caller."""

    @abc.abstractmethod
    async def list_workers(self) -> list[tuple[str, int, str, float]]:
        """Workers seen lately: (id, pid, host, lease expiry on the store's clock)."""

    @abc.abstractmethod
    async def expire_workers(self, workers: Sequence[str]) -> None:
        """End now the leases of workers known to be dead."""

    @abc.abstractmethod
    async def agent_owners(self) -> dict[str, tuple[str | None, int, float]]:
        """agent -> (owning worker or None, epoch, lease expiry)."""

    # whole tables (moving a project between stores) ----------------------
    @abc.abstractmethod
    async def table_names(self) -> list[str]: ...

    @abc.abstractmethod
    async def export_rows(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Every row of ``table``, with its column names."""

    @abc.abstractmethod
    async def clear(self) -> None:
        """Delete every row of every table (a fresh start, as ``wakeful demo`` makes)."""

    @abc.abstractmethod
    async def import_rows(self, table: str, columns: Sequence[str],
                          rows: Sequence[Sequence[Any]]) -> None: ...

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
