"""How a task's end reaches whoever waits for it, and when the runtime is idle, as
methods of :class:`~wakeful.runtime.runtime.Runtime`.

A task settles once it reaches its final outcome (done, cancelled, or failed with no
retry to come): its waiters wake and the settle hooks run (the mailbox mails a
delegated task's result back; the responder sends a person their answer). A task run
by another worker settles there: :meth:`Settling.wait_task` also watches the store.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import structlog

from wakeful.core.records import TaskRecord
from wakeful.core.states import AgentState, TaskState

if TYPE_CHECKING:
    from wakeful.runtime.agent import AgentRunner
    from wakeful.runtime.ownership import Ownership
    from wakeful.runtime.responder import Responder
    from wakeful.runtime.signal import Signal
    from wakeful.schedule.timers import Scheduler
    from wakeful.store.base import Store

log = structlog.get_logger("wakeful.runtime")


class Settling:
    """Settle tasks, wait for them, and tell when the runtime is idle."""

    if TYPE_CHECKING:  # what the runtime provides
        store: Store
        ownership: Ownership
        agents: dict[str, AgentRunner]
        responder: Responder
        scheduler: Scheduler
        poll_interval_s: float
        _changed: Signal
        _settled: dict[str, list[asyncio.Future[TaskRecord]]]
        _known: set[str]
        _settles: int
        _queued_reads: Counter[int]
        _settled_at: dict[str, int]
        _settle_hooks: list[Callable[[TaskRecord], None]]

        async def get_task(self, task_id: str) -> TaskRecord: ...

        def _accept_queued(self, queued: Iterable[TaskRecord]) -> None: ...

    def settle(self, record: TaskRecord) -> None:
        """A task reached its final outcome: wake whoever waits for it."""
        self._known.discard(record.id)
        self._settles += 1
        if self._queued_reads:
            self._settled_at[record.id] = self._settles
        for future in self._settled.pop(record.id, []):
            if not future.done():
                future.set_result(record)
        for hook in self._settle_hooks:
            try:
                hook(record)
            except Exception as exc:  # a broken hook must not break the task's agent
                log.error("settle hook failed", task=record.id, error=repr(exc))
        self.changed()

    async def stored_queued(self, agent: str | None = None) -> list[TaskRecord]:
        """The tasks queued in the store, leaving out those that settled after the read
        began (a cancel racing the read would otherwise queue its task again, here, once
        it is no longer known). Only those: a task settled before the read began and
        queued again since (a retry) is taken, however long reads keep overlapping."""
        start = self._settles
        self._queued_reads[start] += 1
        try:
            found = await self.store.list_tasks(agent=agent, states=[TaskState.QUEUED])
        finally:
            self._queued_reads[start] -= 1
            if not self._queued_reads[start]:
                del self._queued_reads[start]
        settled_at = self._settled_at
        found = [r for r in found if settled_at.get(r.id, start) <= start]
        oldest = min(self._queued_reads, default=None)  # what reads still under way need
        if oldest is None:
            settled_at.clear()
        elif len(settled_at) > 64:
            for task_id in [t for t, when in settled_at.items() if when <= oldest]:
                del settled_at[task_id]
        return found

    def finished(self, record: TaskRecord) -> bool:
        """Has this task reached its final outcome (done, cancelled, or failed with no
        retry to come)?"""
        return record.state in (TaskState.DONE, TaskState.CANCELLED) or (
            record.state is TaskState.FAILED and record.id not in self._known)

    def on_settle(self, hook: Callable[[TaskRecord], None]) -> None:
        """Call ``hook(record)`` whenever a task reaches its final outcome (the mailbox
        uses it to mail a delegated task's result back to whoever delegated it)."""
        self._settle_hooks.append(hook)

    async def wait_task(self, task_id: str, timeout: float | None = None) -> TaskRecord:
        """Wait until a task is done, cancelled, or failed with no retry to come.

        The waiter is registered before the task is first read: a task that settles
        while that read is under way (the read then returns it as it was) still wakes
        it. It used to be registered after, and such a task failed for good was then
        waited for until the timeout (under load, in CI)."""
        future: asyncio.Future[TaskRecord] = asyncio.get_running_loop().create_future()
        waiters = self._settled.setdefault(task_id, [])
        waiters.append(future)
        try:
            record = await self.get_task(task_id)
            if self.finished(record):
                return record
            async with asyncio.timeout(timeout):
                while True:
                    # Settled here, or (run by another worker) seen final in the store.
                    done, _ = await asyncio.wait([future], timeout=self.poll_interval_s)
                    if done:
                        return future.result()
                    stored = await self.store.get_task(task_id)
                    if stored is not None and (
                            self.finished(stored)
                            or (stored.state is TaskState.FAILED
                                and not self.ownership.owns(stored.agent))):
                        return stored
        finally:
            if not future.done():  # timed out or cancelled: settle never took this list
                waiters.remove(future)
                if not waiters:
                    del self._settled[task_id]

    # idleness ------------------------------------------------------------
    def changed(self) -> None:
        self._changed.fire()

    def idle(self) -> bool:
        """No running agent has work queued, running (sleeping tasks included) or about
        to retry, no timer is firing and the responder has nothing to hand out. Timers
        due later do not count: a project with a recurring schedule would otherwise
        never be idle."""
        return not (self.scheduler.firing or self.responder.busy()
                    or any(a.busy() for a in self.agents.values()))

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no running agent has work queued, running or about to retry
        (future timers are ignored; see :meth:`idle`), here and in the store: a task
        stored for one of this worker's agents and not yet picked up (its doorbell still
        on its way, as after a timer woke a task that held no loop) is work left."""
        async with asyncio.timeout(timeout):
            while True:
                while not self.idle():
                    await self._changed.wait()
                unseen = await self._unseen_work()
                if not unseen:
                    if self.idle():  # a doorbell may have handed a task over meanwhile
                        return
                    continue
                self._accept_queued(unseen)  # picked up now rather than at the next poll
                if self.idle():
                    await asyncio.sleep(self.poll_interval_s)

    async def _unseen_work(self) -> list[TaskRecord]:
        """The tasks queued in the store for running agents of this worker, not yet
        handed to them."""
        await self.store.flush()
        unseen = []
        for record in await self.stored_queued():
            agent = self.agents.get(record.agent)
            if (record.id not in self._known and agent is not None
                    and agent.state is AgentState.RUNNING
                    and self.ownership.owns(record.agent)):
                unseen.append(record)
        return unseen

    async def wait_changed(self) -> None:
        await self._changed.wait()
