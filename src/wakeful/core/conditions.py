"""What a wait waits for: the events a model (or a caller) may name, validated at the
edge, and the plain conditions the runtime waits on; who waits, and what a waiting
task shows. Shared by the waits service, the timers that store waits, and the tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from wakeful.core.mail import MailFilter
from wakeful.core.timespecs import stamp
from wakeful.errors import ScheduleError

# what a model (or a caller) asks to wait for: pydantic at the edge -----------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MailEvent(_Spec):
    """Mail for you (your task's mailbox or your agent's) that matches every field given."""

    kind: Literal["mail"]
    sender: str | None = Field(default=None, description="from this address (an agent "
                               "name also matches its tasks)")
    subject: str | None = Field(default=None, description="subject contains this")
    thread_id: str | None = None
    correlation_id: str | None = None
    payload: dict[str, Any] | None = Field(default=None, description="payload fields "
                                           "(dotted paths) with these values")


class TaskEvent(_Spec):
    """A task reaching a state; ``finished`` (the default) is its final outcome: done,
    cancelled, or failed with no retry to come."""

    kind: Literal["task"]
    task_id: str
    state: Literal["done", "failed", "cancelled", "finished"] = "finished"


class AgentEvent(_Spec):
    """An agent changing state (to ``state``, or to anything when it is not given)."""

    kind: Literal["agent"]
    agent: str
    state: Literal["created", "running", "sleeping", "paused", "stopped", "failed"] | None \
        = None


class ResourceEvent(_Spec):
    """A resource (e.g. 'file:docs/plan.md') becoming free: no operation and no lock on
    it or on anything inside or around it."""

    kind: Literal["resource"]
    resource: str


EventSpec = Annotated[MailEvent | TaskEvent | AgentEvent | ResourceEvent,
                      Field(discriminator="kind")]

_SPECS: TypeAdapter[list[EventSpec]] = TypeAdapter(list[EventSpec])


def parse_events(data: Any) -> list[EventSpec]:
    """Validate a list of events to wait for; ScheduleError names what was wrong."""
    try:
        return _SPECS.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(events)'}: "
                             f"{e['msg']}" for e in exc.errors())
        raise ScheduleError(f"events to wait for are not valid: {problems}") from None


# what the runtime waits for: plain dataclasses inside -------------------------------


@dataclass(frozen=True, slots=True)
class MailArrives:
    filter: MailFilter | None = None

    def describe(self) -> str:
        return f"mail {self.filter.describe()}" if self.filter else "mail"


@dataclass(frozen=True, slots=True)
class TaskReaches:
    task_id: str
    state: str = "finished"

    def describe(self) -> str:
        return f"task {self.task_id} {self.state}"


@dataclass(frozen=True, slots=True)
class AgentChanges:
    agent: str
    state: str | None = None

    def describe(self) -> str:
        return f"agent {self.agent} " + (f"{self.state}" if self.state else "changing state")


@dataclass(frozen=True, slots=True)
class ResourceFree:
    resource: str

    def describe(self) -> str:
        return f"{self.resource} free"


Condition = MailArrives | TaskReaches | AgentChanges | ResourceFree


def condition_of(spec: EventSpec) -> Condition:
    if isinstance(spec, MailEvent):
        try:
            found = MailFilter.of(sender=spec.sender, subject=spec.subject,
                                  thread_id=spec.thread_id,
                                  correlation_id=spec.correlation_id, payload=spec.payload)
        except ValueError as exc:
            raise ScheduleError(f"mail to wait for: {exc}") from None
        return MailArrives(found)
    if isinstance(spec, TaskEvent):
        return TaskReaches(spec.task_id, spec.state)
    if isinstance(spec, AgentEvent):
        return AgentChanges(spec.agent, spec.state)
    return ResourceFree(spec.resource)


def spec_of(condition: Condition) -> dict[str, Any]:
    """A condition as JSON (stored with a wait, read back by :func:`parse_events`)."""
    if isinstance(condition, MailArrives):
        f = condition.filter
        data: dict[str, Any] = {"kind": "mail"}
        if f is not None:
            for name in ("sender", "subject", "thread_id", "correlation_id"):
                if getattr(f, name) is not None:
                    data[name] = getattr(f, name)
            if f.payload:
                data["payload"] = dict(f.payload)
        return data
    if isinstance(condition, TaskReaches):
        return {"kind": "task", "task_id": condition.task_id, "state": condition.state}
    if isinstance(condition, AgentChanges):
        return {"kind": "agent", "agent": condition.agent, **(
            {"state": condition.state} if condition.state else {})}
    return {"kind": "resource", "resource": condition.resource}


def describe_all(conditions: Sequence[Condition]) -> str:
    return " or ".join(c.describe() for c in conditions)


@dataclass(frozen=True, slots=True)
class Who:
    """Who waits: an agent, or one of its tasks (``task_id``)."""

    agent: str
    task_id: str | None = None

    @property
    def reader(self) -> str:
        return f"{self.agent}/{self.task_id}" if self.task_id else self.agent

    @property
    def mailboxes(self) -> tuple[str, ...]:
        return (self.reader, self.agent) if self.task_id else (self.agent,)


@dataclass(frozen=True, slots=True)
class WaitInfo:
    """What a task is waiting for right now (for status views and the monitor)."""

    task_id: str
    agent: str
    what: str
    since: float
    until: float | None
    timer_id: str | None

    @property
    def sleeping(self) -> bool:
        """A plain sleep: it waits for time only, on purpose."""
        return self.what.startswith("sleeping")

    def to_dict(self) -> dict[str, Any]:
        return {"waiting_for": self.what, "since": stamp(self.since),
                "wakes_at": stamp(self.until), "timer_id": self.timer_id}
