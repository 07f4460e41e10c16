"""The capabilities a tool's context hands out, as the tools see them.

Each is a :class:`typing.Protocol` listing exactly what tools call: the real services
(:class:`~wakeful.mailbox.service.Mailbox`, :class:`~wakeful.resources.manager.
ResourceManager`, :class:`~wakeful.schedule.timers.Scheduler`, ...) and the runtime's
:class:`~wakeful.runtime.team.Team` satisfy them structurally, which mypy checks where
the runtime hands them to a :class:`~wakeful.toolkit.context.ToolContext`. Living
here, below the services, they let the services' own tools take a context without the
services (or this package) importing the runtime that composes them: the layers stay
one way (core < toolkit < services < runtime).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from wakeful.core.conditions import Condition, WaitInfo, Who
from wakeful.core.files import Confined
from wakeful.core.locks import KVEntry, LockRow
from wakeful.core.mail import Mail, MailFilter
from wakeful.core.mail_records import Change, Delegation, Delivery, DeliveryState, Envelope, Sent
from wakeful.core.records import AgentRecord, Event, TaskRecord
from wakeful.core.resources import Access, Mode, Resource, ResourceKinds
from wakeful.core.states import AgentState, TaskState
from wakeful.core.team import AgentStatus, ControlOutcome
from wakeful.core.timers import Timer, TimerAction
from wakeful.core.timespecs import MisfirePolicy, TimerSpec
from wakeful.core.wake import Wake
from wakeful.project.definitions import AgentDefinition, MailboxConfig
from wakeful.store.locks import LockStore
from wakeful.store.mail import MailStore
from wakeful.store.timers import TimerStore

if TYPE_CHECKING:
    from wakeful.toolkit.context import ToolContext

T = TypeVar("T")



class MailCapability(Protocol):
    """The mailbox, as tools send, read and wait for mail."""

    @property
    def config(self) -> MailboxConfig: ...

    @property
    def store(self) -> MailStore: ...

    async def flush(self) -> None: ...

    async def commit_changes(self, changes: Sequence[Change]) -> None: ...

    async def send(self, sender: str, to: str, subject: str = "", body: str = "",
                   **fields: Any) -> Sent: ...

    async def post(self, sender: str, channel: str, body: str, subject: str = "",
                   **fields: Any) -> Sent: ...

    async def reply(self, sender: str, original: Envelope | Mail, body: str = "", *,
                    subject: str | None = None, payload: dict[str, Any] | None = None,
                    to: str | None = None, idempotency_key: str | None = None) -> Sent: ...

    async def request(self, reader: str, to: str, subject: str = "", body: str = "", *,
                      payload: dict[str, Any] | None = None, timeout: float | None = None,
                      idempotency_key: str | None = None, priority: str = "normal"
                      ) -> Delivery: ...

    async def ask_for_help(self, reader: str, question: str, *, to: str | None = None,
                           subject: str = "help wanted", payload: dict[str, Any] | None = None,
                           timeout: float | None = None, idempotency_key: str | None = None
                           ) -> tuple[Delivery, int]: ...

    async def delegate(self, reader: str, agent: str, instruction: str, *,
                       key: str | None = None, reply_to: str | None = None) -> Delegation: ...

    async def wait_delegation(self, reader: str, delegation: Delegation,
                              timeout: float | None = None) -> Delivery | TaskRecord: ...

    def claim(self, reader: str, filter: MailFilter | None = None, limit: int = 10
              ) -> list[Delivery]: ...

    def held(self, reader: str) -> list[Delivery]: ...

    def pending(self, reader: str, filter: MailFilter | None = None) -> int: ...

    async def receive(self, reader: str, filter: MailFilter | None = None,
                      timeout: float | None = None) -> Delivery: ...

    def ack_with_step(self, delivery: Delivery) -> DeliveryState | None: ...

    async def ack_id(self, reader: str, mail_id: str) -> bool: ...

    async def read(self, reader: str | None, mail_id: str) -> Mail: ...

    def view(self, delivery: Delivery) -> Mail: ...

    async def list_mail(self, *, owner: str | None = None, status: str | None = None,
                        sender: str | None = None, limit: int = 100) -> list[Mail]: ...

    async def history(self, reader: str | None, channel: str, limit: int = 50,
                      before_seq: int | None = None) -> list[Mail]: ...


class WorkspaceLike(Protocol):
    def confined(self, real: Path) -> Confined: ...


class LockReport(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class LocksReport(Protocol):
    def to_dict(self, deadlocks: list[dict[str, Any]] | None = None) -> dict[str, Any]: ...


class ResourceCapability(Protocol):
    """Shared resources: the workspace, the scratchpad, locks and auto-pause."""

    @property
    def workspace(self) -> WorkspaceLike | None: ...

    @property
    def store(self) -> LockStore: ...

    @property
    def kinds(self) -> ResourceKinds: ...

    def parse(self, text: str) -> Resource: ...

    def path(self, path: str) -> Path: ...

    async def view(self) -> LocksReport: ...

    async def acquire(self, ctx: ToolContext, resource_name: str, mode: Mode | str = Mode.WRITE,
                      lease_s: float | None = None, wait_s: float = 0.0) -> LockReport: ...

    async def renew(self, ctx: ToolContext, resource_name: str,
                    lease_s: float | None = None) -> LockRow: ...

    async def release(self, ctx: ToolContext, resource_name: str) -> dict[str, Any]: ...

    def guard(self, ctx: ToolContext, accesses: Iterable[Access]
              ) -> AbstractAsyncContextManager[None]: ...

    async def write_fenced(self, ctx: ToolContext, resource_name: str, token: int | None,
                           write: Callable[[], T]) -> T: ...

    async def kv_set(self, ctx: ToolContext, key: str, value: object, token: int | None
                     ) -> KVEntry: ...


class TimerCapability(Protocol):
    """Durable timers and schedules."""

    @property
    def store(self) -> TimerStore: ...

    def get(self, timer_id: str) -> Timer | None: ...

    def active(self) -> list[Timer]: ...

    async def add(self, spec: TimerSpec | None, action: TimerAction, *,
                  agent: str | None = None, task_id: str | None = None,
                  instruction: str | None = None, key: str | None = None,
                  misfire: MisfirePolicy = "once", max_runs: int | None = None,
                  purpose: str = "", created_by: str = "api", conditions: str | None = None
                  ) -> Timer: ...

    async def cancel(self, timer_id: str, why: str = "cancelled") -> Timer: ...


class PendingWaitLike(Protocol):
    """A wait set up (durably) and not yet waited on."""

    @property
    def ended(self) -> Wake | None: ...

    def describe(self) -> str: ...

    async def wait(self) -> Wake: ...


class WaitCapability(Protocol):
    """Waiting for time, mail, tasks, agents or resources."""

    def waiting(self, task_id: str) -> WaitInfo | None: ...

    async def prepare(self, who: Who, conditions: Sequence[Condition] = (), *,
                      until: float | None = None, key: str | None = None, purpose: str = ""
                      ) -> PendingWaitLike: ...


class Clock(Protocol):
    def now(self) -> float: ...


class StreakLike(Protocol):
    @property
    def tool(self) -> str: ...

    @property
    def arguments(self) -> str: ...

    @property
    def times(self) -> int: ...


class ProgressCapability(Protocol):
    """Reported progress and the status of tasks and agents."""

    def last_activity(self, record: TaskRecord) -> float: ...

    def streak(self, task_id: str) -> StreakLike | None: ...

    async def report(self, task_id: str, percent: float, note: str = "") -> TaskRecord: ...

    async def task_status(self, task_id: str, *, events: int = 5) -> dict[str, Any]: ...

    async def agent_status(self, name: str, *, events: int = 5,
                           totals: dict[str, tuple[int, int, int]] | None = None
                           ) -> dict[str, Any]: ...

    async def overview(self, agents: list[str], *, events: int = 0
                       ) -> list[dict[str, Any]]: ...


class TeamCapability(Protocol):
    """The other agents and tasks: reading them, starting tasks, control actions."""

    def names(self) -> Collection[str]: ...

    def definition(self, agent: str) -> AgentDefinition: ...

    def state(self, agent: str) -> AgentState: ...

    def record(self, agent: str) -> AgentRecord | None: ...

    def running_tasks(self, agent: str) -> Sequence[TaskRecord]: ...

    def statuses(self) -> list[AgentStatus]: ...

    async def get_task(self, task_id: str) -> TaskRecord: ...

    async def list_tasks(self, agent: str | None = None,
                         states: Sequence[TaskState] | None = None) -> list[TaskRecord]: ...

    async def create_task(self, agent: str, instruction: str, *, created_by: str
                          ) -> TaskRecord: ...

    async def person_of(self, task_id: str) -> str | None: ...

    async def events(self, **filters: Any) -> list[Event]: ...

    async def control(self, action: str, target: str, *, by: str, **details: Any
                      ) -> ControlOutcome: ...

    def refuse_control(self, action: str, target: str, *, by: str, agent: str | None,
                       why: str) -> None: ...

    async def spawn_agent(self, parent: str, fields: dict[str, Any], *, by: str
                          ) -> AgentDefinition: ...
