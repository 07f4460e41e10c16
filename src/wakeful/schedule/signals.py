"""How waits are resolved: each condition a wait is for is registered, keyed by what
it is about, and the runtime's own signals (mail arriving, task and agent state
changes, tasks settling, resources released) resolve it; a watcher looks at
resources other processes hold (see :mod:`wakeful.schedule.waits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from wakeful.core.conditions import (
    AgentChanges,
    Condition,
    MailArrives,
    ResourceFree,
    TaskReaches,
    WaitInfo,
    Who,
)
from wakeful.core.mail_records import Delivery
from wakeful.core.records import Event, TaskRecord
from wakeful.core.scope import TaskScope
from wakeful.errors import WakefulError

if TYPE_CHECKING:
    from wakeful.schedule.host import ScheduleHost


log = structlog.get_logger("wakeful.schedule")


@dataclass(slots=True, eq=False)
class _Reg:
    condition: Condition
    resolve: Callable[[dict[str, Any]], None]


class WaitsBase:
    """The state of the waits service, and the registrations the runtime's signals
    resolve."""

    def __init__(self) -> None:
        self._runtime: ScheduleHost | None = None
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

    @property
    def runtime(self) -> ScheduleHost:
        if self._runtime is None:
            raise WakefulError("the waits service is not started (start the runtime)")
        return self._runtime

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
