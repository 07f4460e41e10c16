"""Event waits: sleep until mail comes, a task ends, an agent changes, a resource frees.

A wait is one future. Each event it waits for is registered in a dictionary keyed by
what it is about (a mailbox, a task id, an agent name), and the runtime's own signals
resolve it: the mailbox's arrival hook, the event log's listeners (task and agent state
changes), the runtime's settle hook (a task's final outcome) and the resource layer's
release hook. Whichever comes first wins; a timer (the timeout, or the sleep itself)
is one more way to resolve the same future. Nothing polls, and a sleeping task costs a
future and a few dictionary entries, so thousands of sleepers are cheap.

The one exception is a resource held by *another* process: its release is only seen by
looking at the store again, which the resource watcher does at the lock's lease expiry
and every ``resources.poll_interval_s`` while such a lock is in the way.

A task's wait is also a row of the ``timers`` table (see
:mod:`wakeful.core.timers`), keyed by the task, its step and the call, so that a
task resumed after a restart sleeps only the time that is left, or, if its wait had
already ended, wakes at once with the same message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from wakeful.core.mail import MailFilter
from wakeful.core.mail_records import Delivery
from wakeful.core.records import Event, TaskRecord
from wakeful.core.states import AgentState
from wakeful.core.timers import Timer
from wakeful.core.timespecs import TimerSpec, stamp
from wakeful.errors import ScheduleError, WakefulError
from wakeful.runtime.scope import TaskScope
from wakeful.schedule.wake import Wake, describe_event

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime

log = structlog.get_logger("wakeful.schedule")


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


@dataclass(slots=True, eq=False)
class PendingWait:
    """A wait that is set up (stored, for a task) and not yet waited on."""

    waits: Waits
    who: Who
    conditions: list[Condition]
    until: float | None
    timer: Timer | None
    ended: Wake | None = None  # already over (before a restart): how it ended
    since: float = 0.0

    @property
    def waiting_for(self) -> str:
        return describe_all(self.conditions) if self.conditions else "time"

    def describe(self) -> str:
        """The reason a waiting task shows (``wakeful why``, status views)."""
        timer = f" (timer {self.timer.id})" if self.timer is not None else ""
        if not self.conditions:
            return f"sleeping until {stamp(self.until)}{timer}"
        limit = f"; timeout at {stamp(self.until)}" if self.until is not None else ""
        return f"waiting for {self.waiting_for}{limit}{timer}"

    async def wait(self) -> Wake:
        if self.ended is not None:
            return self.ended
        return await self.waits._wait(self)


@dataclass(slots=True, eq=False)
class _Reg:
    condition: Condition
    resolve: Callable[[dict[str, Any]], None]


class Waits:
    """The ``waits`` service: reachable as ``runtime.waits``."""

    name = "waits"

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._mail: dict[str, list[_Reg]] = {}
        self._tasks: dict[str, list[_Reg]] = {}
        self._agents: dict[str, list[_Reg]] = {}
        self._resources: list[_Reg] = []
        self._current: dict[str, WaitInfo] = {}
        self._agent_sleeps: dict[str, asyncio.Task[None]] = {}
        self._scope = TaskScope("waits")
        self._resource_watch: asyncio.Task[None] | None = None
        self._resource_kick: asyncio.Future[None] | None = None
        self.woken = 0

    # lifecycle -------------------------------------------------------------
    async def start(self, runtime: Runtime) -> None:
        self._runtime = runtime
        runtime.mailbox.on_arrival(self._on_mail)
        runtime.events.add_listener(self._on_event)
        runtime.on_settle(self._on_settle)
        runtime.resources.on_change(self._on_resources)

    def begin(self) -> None:
        """Re-arm the event waits of agents asleep since before a restart."""
        runtime = self.runtime
        for timer in runtime.scheduler.active():
            if timer.action == "wake_agent" and timer.conditions and timer.agent:
                try:
                    conditions = [condition_of(s) for s in parse_events(
                        timer.condition_data())]
                except WakefulError as exc:
                    log.error("cannot re-arm an agent's wait", agent=timer.agent,
                              error=str(exc))
                    continue
                self._arm_agent(timer.agent, timer, conditions)

    async def stop(self) -> None:
        await self._scope.aclose()
        self._agent_sleeps.clear()
        if self._runtime is not None:
            with contextlib.suppress(ValueError):
                self._runtime.events.remove_listener(self._on_event)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise WakefulError("the waits service is not started (start the runtime)")
        return self._runtime

    # status ----------------------------------------------------------------
    def waiting(self, task_id: str) -> WaitInfo | None:
        """What this task waits for in ``sleep_for`` / ``sleep_until`` /
        ``wait_for_event``, if it does."""
        return self._current.get(task_id)

    def sleepers(self) -> int:
        return len(self._current)

    # the runtime's signals -------------------------------------------------
    def _on_mail(self, delivery: Delivery) -> None:
        regs = self._mail.get(delivery.owner)
        if not regs:
            return
        mail = delivery.mail
        for reg in tuple(regs):
            wanted = reg.condition.filter  # type: ignore[union-attr]
            if wanted is None or wanted.matches(mail):
                reg.resolve({"kind": "mail", "mail_id": mail.id, "from": mail.sender,
                             "subject": mail.subject, "to": delivery.owner})

    def _on_event(self, event: Event) -> None:
        kind = event.type
        if kind == "task.state":
            regs = self._tasks.get(event.task_id or "")
            if regs:
                to = event.data.get("to")
                for reg in tuple(regs):
                    if reg.condition.state == to:  # type: ignore[union-attr]
                        reg.resolve({"kind": "task", "task_id": event.task_id,
                                     "agent": event.agent, "state": to})
        elif kind == "agent.state":
            regs = self._agents.get(event.agent or "")
            if regs:
                to = event.data.get("to")
                for reg in tuple(regs):
                    wanted = reg.condition.state  # type: ignore[union-attr]
                    if wanted is None or wanted == to:
                        reg.resolve({"kind": "agent", "agent": event.agent,
                                     "from": event.data.get("from"), "to": to,
                                     "reason": event.data.get("reason", "")})

    def _on_settle(self, record: TaskRecord) -> None:
        regs = self._tasks.get(record.id)
        if regs:
            for reg in tuple(regs):
                if reg.condition.state == "finished":  # type: ignore[union-attr]
                    reg.resolve({"kind": "task", "task_id": record.id, "agent": record.agent,
                                 "state": record.state.value})

    def _on_resources(self) -> None:
        kick = self._resource_kick
        if kick is not None and not kick.done():
            kick.set_result(None)

    # registration ----------------------------------------------------------
    def _register(self, condition: Condition, who: Who,
                  resolve: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        reg = _Reg(condition, resolve)
        if isinstance(condition, ResourceFree):
            self._resources.append(reg)
            self._watch_resources()
            self._on_resources()  # a watcher already running looks at it now

            def unwatch() -> None:
                with contextlib.suppress(ValueError):
                    self._resources.remove(reg)

            return unwatch
        if isinstance(condition, MailArrives):
            table, keys = self._mail, who.mailboxes
        elif isinstance(condition, TaskReaches):
            table, keys = self._tasks, (condition.task_id,)
        else:
            table, keys = self._agents, (condition.agent,)
        for key in keys:
            table.setdefault(key, []).append(reg)

        def unregister() -> None:
            for key in keys:
                regs = table.get(key)
                if regs is None:
                    continue
                with contextlib.suppress(ValueError):
                    regs.remove(reg)
                if not regs:  # a dict must not grow with every task ever waited on
                    del table[key]

        return unregister

    async def _validate(self, condition: Condition) -> None:
        runtime = self.runtime
        if isinstance(condition, TaskReaches):
            await runtime.get_task(condition.task_id)  # UnknownTaskError names it
        elif isinstance(condition, AgentChanges):
            runtime.agent(condition.agent)
        elif isinstance(condition, ResourceFree):
            runtime.resources.parse(condition.resource)

    async def _happened(self, condition: Condition, who: Who) -> dict[str, Any] | None:
        """Is what this condition waits for already the case?"""
        runtime = self.runtime
        if isinstance(condition, MailArrives):
            pending = runtime.mailbox.pending(who.reader, condition.filter)
            if pending:
                return {"kind": "mail", "pending": pending,
                        "matching": condition.filter.describe() if condition.filter else ""}
            return None
        if isinstance(condition, TaskReaches):
            record = await runtime.get_task(condition.task_id)
            reached = (runtime.finished(record) if condition.state == "finished"
                       else record.state.value == condition.state)
            if reached:
                return {"kind": "task", "task_id": record.id, "agent": record.agent,
                        "state": record.state.value}
            return None
        if isinstance(condition, AgentChanges):
            agent = runtime.agent(condition.agent)
            if condition.state is not None and agent.state.value == condition.state:
                return {"kind": "agent", "agent": agent.name, "from": None,
                        "to": agent.state.value, "reason": agent.record.reason}
            return None
        use = await runtime.resources.users(condition.resource)
        return {"kind": "resource", "resource": use.resource} if use.free else None

    # waiting ---------------------------------------------------------------
    async def prepare(
        self,
        who: Who,
        conditions: Sequence[Condition] = (),
        *,
        until: float | None = None,
        key: str | None = None,
        purpose: str = "",
    ) -> PendingWait:
        """Set up a wait for the first of ``conditions``, or until ``until`` (epoch
        seconds on the runtime's clock): a timeout when there are conditions, the
        wake-up itself when there are none. Then ``await pending.wait()``.

        For a task (``who.task_id``) with a ``key``, the wait is stored: prepared again
        with the same key (a task resumed after a restart, redoing its step), it goes on
        for the time that is left, or is already over (``pending.ended``) with the wake-up
        it ended with.
        """
        if not conditions and until is None:
            raise ScheduleError("nothing to wait for: give events, a time, or both")
        for condition in conditions:
            await self._validate(condition)
        runtime = self.runtime
        timer: Timer | None = None
        if who.task_id is not None and key is not None:
            what = describe_all(conditions) if conditions else "time"
            timer = await runtime.scheduler.add(
                TimerSpec.at(until) if until is not None else None, "wake_task",
                agent=who.agent, task_id=who.task_id, key=key, purpose=what,
                created_by=who.reader,
                conditions=json.dumps([spec_of(c) for c in conditions]) if conditions
                else None)
            if not timer.active:
                ended = timer.outcome_data()
                if ended is not None and ended.get("reason") in ("timer", "event", "timeout"):
                    return PendingWait(self, who, list(conditions), until, timer,
                                       Wake.from_record(ended, resumed=True))
                timer = None  # cancelled with its task once: this is a new wait
            else:
                until = timer.next_due  # resumed: the time that is left
        since = timer.created_at if timer is not None else runtime.clock.now()
        return PendingWait(self, who, list(conditions), until, timer, None, since)

    async def wait(self, who: Who, conditions: Sequence[Condition] = (), *,
                   until: float | None = None, key: str | None = None) -> Wake:
        """:meth:`prepare` and wait, in one call."""
        return await (await self.prepare(who, conditions, until=until, key=key)).wait()

    async def _wait(self, pending: PendingWait) -> Wake:
        runtime = self.runtime
        clock = runtime.clock
        who, conditions, timer, until = pending.who, pending.conditions, pending.timer, \
            pending.until
        since = pending.since
        what = pending.waiting_for
        future: asyncio.Future[Wake] = asyncio.get_running_loop().create_future()

        def resolve(wake: Wake) -> None:
            if not future.done():
                future.set_result(wake)

        def on_event(event: dict[str, Any]) -> None:
            resolve(Wake("event", clock.now(), since, event=event, waited_for=what))

        if timer is not None and not runtime.scheduler.on_fire(timer.id, resolve):
            ended = timer.outcome_data()  # it fired while the task was getting ready
            if ended is not None and ended.get("reason") in ("timer", "timeout"):
                return self._woke(who, Wake.from_record(ended))
            raise ScheduleError(f"timer {timer.id} is not active in this runtime")
        unregister = [self._register(c, who, on_event) for c in conditions]
        handle = None
        if timer is None and until is not None:
            reason: Literal["timer", "timeout"] = "timeout" if conditions else "timer"
            handle = clock.call_at(until, lambda: resolve(Wake(
                reason, clock.now(), since, due=until, waited_for=what)))
        if who.task_id is not None:
            self._current[who.task_id] = WaitInfo(
                who.task_id, who.agent, pending.describe(), since, until,
                timer.id if timer else None)
        try:
            for condition in conditions:
                happened = await self._happened(condition, who)
                if happened is not None:
                    on_event(happened)
                    break
            wake = await future
        finally:
            for undo in unregister:
                undo()
            if timer is not None:
                runtime.scheduler.off_fire(timer.id)
            if handle is not None:
                handle.cancel()
            if who.task_id is not None:
                self._current.pop(who.task_id, None)
        if timer is not None and wake.reason == "event":
            runtime.scheduler.end_wait(timer, "done", wake.record())
        return self._woke(who, wake)

    def _woke(self, who: Who, wake: Wake) -> Wake:
        self.woken += 1
        if who.task_id is not None:
            late = None if wake.due is None or wake.reason == "event" else round(
                (wake.at - wake.due) * 1000, 3)
            self.runtime.events.emit("task.woke", agent=who.agent, task_id=who.task_id, data={
                "reason": wake.reason, "timer_id": wake.timer_id, "event": wake.event,
                "slept_s": None if wake.slept_s is None else round(wake.slept_s, 3),
                "late_ms": late})
        return wake

    # the resource watcher --------------------------------------------------
    def _watch_resources(self) -> None:
        if self._resource_watch is None or self._resource_watch.done():
            self._resource_watch = self._scope.spawn(self._watch(), name="waits:resources")

    async def _watch(self) -> None:
        """Resolve resource waits as their resources come free (see the module doc)."""
        loop = asyncio.get_running_loop()
        resources = self.runtime.resources
        try:
            while self._resources:
                self._resource_kick = loop.create_future()
                recheck: float | None = None
                for reg in tuple(self._resources):
                    condition = reg.condition
                    assert isinstance(condition, ResourceFree)
                    try:
                        use = await resources.users(condition.resource)
                    except WakefulError as exc:
                        log.error("cannot check a resource", resource=condition.resource,
                                  error=str(exc))
                        continue
                    if use.free:
                        reg.resolve({"kind": "resource", "resource": use.resource})
                        continue
                    times = [] if use.expires_at is None else [use.expires_at - time.time()]
                    if use.foreign:
                        times.append(resources.config.poll_interval_s)
                    if times:
                        recheck = min([*times, recheck] if recheck is not None else times)
                if not self._resources:
                    break
                timeout = None if recheck is None else max(0.0, recheck) + 0.01
                await asyncio.wait({self._resource_kick}, timeout=timeout)
        finally:
            self._resource_kick = None

    # agents asleep ---------------------------------------------------------
    async def sleep_agent(self, name: str, reason: str = "asleep", *,
                          until: float | None = None,
                          wake_on: Iterable[Condition] = ()) -> None:
        runtime = self.runtime
        agent = runtime.agent(name)
        conditions = list(wake_on)
        for condition in conditions:
            await self._validate(condition)
        await self._end_agent_sleep(name, "it was put to sleep again")
        text = reason
        timer = None
        if until is not None or conditions:
            timer = await runtime.scheduler.add(
                TimerSpec.at(until) if until is not None else None, "wake_agent", agent=name,
                purpose=reason, created_by="api",
                conditions=json.dumps([spec_of(c) for c in conditions]) if conditions
                else None)
            wakes = ([f"until {stamp(until)}"] if until is not None else []) + (
                [f"until {describe_all(conditions)}"] if conditions else [])
            text = f"{reason} ({' or '.join(wakes)}; timer {timer.id})"
        if agent.state is AgentState.SLEEPING:  # asleep already: a new wake-up, same sleep
            agent.record.reason = text
            agent.record.updated_at = time.time()
            await runtime.store.save_agent(agent.record, agent.fence)
            runtime.events.emit("agent.sleep_changed", agent=name, data={"reason": text})
            runtime.changed()
        else:
            await agent.set_state(AgentState.SLEEPING, text)
        if timer is not None and conditions:
            self._arm_agent(name, timer, conditions)

    def _arm_agent(self, name: str, timer: Timer, conditions: list[Condition]) -> None:
        self._agent_sleeps[name] = self._scope.spawn(
            self._agent_wait(name, timer, conditions), name=f"waits:agent:{name}")

    async def _agent_wait(self, name: str, timer: Timer, conditions: list[Condition]) -> None:
        try:
            wake = await self.wait(Who(name), conditions)
        except WakefulError as exc:
            log.error("an agent's wait failed", agent=name, error=str(exc))
            return
        finally:
            if self._agent_sleeps.get(name) is asyncio.current_task():
                del self._agent_sleeps[name]
        agent = self.runtime.agents.get(name)
        if agent is not None and agent.state is AgentState.SLEEPING:
            await self.wake_agent(name, f"woken: {describe_event(wake.event or {})}")

    async def _end_agent_sleep(self, name: str, why: str) -> None:
        runtime = self.runtime
        for timer in runtime.scheduler.active():
            if timer.action == "wake_agent" and timer.agent == name:
                await runtime.scheduler.cancel(timer.id, why)
        task = self._agent_sleeps.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def wake_agent(self, name: str, reason: str = "woken") -> None:
        agent = self.runtime.agent(name)
        await self._end_agent_sleep(name, f"the agent was woken ({reason})")
        await agent.set_state(AgentState.RUNNING, reason)

