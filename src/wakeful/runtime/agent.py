"""One agent at run time: its lifecycle, its task queue, and its supervised loop.

The agent loop is a dispatcher: it starts queued tasks as independent task loops, at
most ``max_concurrent_tasks`` at once, each as its own asyncio task. The supervisor
around it applies the agent's restart policy, both to the loop itself (a crash fails
the agent, which is restarted with backoff) and to tasks that end (a retryable failure
is retried; under ``always`` a finished task is started again).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING

from wakeful.core.records import AgentRecord, Fence, TaskRecord
from wakeful.core.scope import TaskScope
from wakeful.core.states import AgentState, TaskState, check_agent_transition
from wakeful.errors import WakefulError
from wakeful.ids import new_id
from wakeful.models.base import Model
from wakeful.project.definitions import AgentDefinition
from wakeful.runtime.accounting import AgentLedger
from wakeful.runtime.task_loop import TaskLoop

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime


class AgentRunner:
    def __init__(self, runtime: Runtime, definition: AgentDefinition, record: AgentRecord) -> None:
        self.runtime = runtime
        self.definition = definition
        self.record = record
        self.allowed_tools = frozenset(definition.tools)
        self.ledger = AgentLedger(definition.name)  # its spending, for its budget
        self._model: Model | None = None
        self._queue: deque[TaskRecord] = deque()
        self._loops: dict[str, tuple[TaskLoop, asyncio.Task[None]]] = {}
        self._retries: dict[str, tuple[TaskRecord, asyncio.Task[None]]] = {}
        self._settling: set[str] = set()  # ended, restart policy not yet applied
        self._scope = TaskScope(f"agent:{definition.name}")
        self._kick = asyncio.Event()
        self._open = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        # This worker's lease on the agent: every write for it carries the fence. It is
        # kept after the lease is lost, so that late writes are refused, not unfenced.
        self.fence: Fence | None = None

    def take_over(self, previous: AgentRunner) -> None:
        """Carry on from the runner of this agent's previous definition (the agent was
        changed at run time): its lifecycle record, its lease and its spending."""
        self.record = previous.record
        self.fence = previous.fence
        self.ledger = previous.ledger
        if self.record.state is AgentState.RUNNING:
            self._open.set()

    @property
    def launched(self) -> bool:
        return self._supervisor is not None

    # identity and status -------------------------------------------------
    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def state(self) -> AgentState:
        return self.record.state

    @property
    def model(self) -> Model:
        if self._model is None:
            self._model = self.runtime.models.get(self.definition.model
                                                  or self.runtime.default_model)
        return self._model

    @property
    def running_tasks(self) -> list[TaskRecord]:
        return [loop.record for loop, _ in self._loops.values()]

    @property
    def queued_tasks(self) -> list[TaskRecord]:
        return list(self._queue)

    def held(self) -> set[str]:
        """The tasks in this agent's hands here: queued, running, waiting out a retry's
        backoff, or settling."""
        return {*self._loops, *self._retries, *self._settling, *(r.id for r in self._queue)}

    def busy(self) -> bool:
        """Can this agent still make progress on its own? (Used to detect idleness.)"""
        if self.state is not AgentState.RUNNING:
            return False
        return bool(self._queue or self._loops or self._retries or self._settling)

    def changed(self) -> None:
        self.runtime.changed()

    async def set_state(self, target: AgentState, reason: str = "") -> None:
        if not self.runtime.owns_agent(self.name):
            raise WakefulError(f"agent {self.name!r} is run by another worker now; change "
                               "its state through that worker")
        current = self.record.state
        check_agent_transition(self.name, current, target)
        self.record.state = target
        self.record.reason = reason
        self.record.updated_at = time.time()
        if target is AgentState.RUNNING:
            self._open.set()
        else:
            self._open.clear()
        await self.runtime.store.save_agent(self.record, self.fence)
        self.runtime.events.emit("agent.state", agent=self.name, data={
            "from": current.value, "to": target.value, "reason": reason})
        self.changed()

    # tasks -------------------------------------------------------------
    def submit(self, record: TaskRecord, *, front: bool = False) -> None:
        if front:
            self._queue.appendleft(record)
        else:
            self._queue.append(record)
        self._kick.set()
        self.changed()

    async def gate(self, loop: TaskLoop) -> None:
        """Hold a task at a step boundary while its agent is not running (paused,
        sleeping): no model call starts until the agent runs again."""
        if self._open.is_set():
            return
        await loop.wait_begin(f"agent {self.state.value}")
        await self._open.wait()
        await loop.wait_end()

    def _start_loop(self, record: TaskRecord) -> None:
        loop = TaskLoop(self, record)
        task = self._scope.spawn(self._run_loop(loop), name=f"task:{record.id}")
        self._loops[record.id] = (loop, task)

    async def _run_loop(self, loop: TaskLoop) -> None:
        try:
            await loop.run()
        except BaseException as exc:
            self._loops.pop(loop.id, None)
            if not isinstance(exc, asyncio.CancelledError):  # (an interrupt requeues it)
                self.runtime.forget_task(loop.id)  # whatever the store holds: read again
            self._kick.set()
            self.changed()
            raise
        if loop.lost:  # another claim won, or the agent's lease moved: not ours to settle
            self._loops.pop(loop.id, None)
            self.runtime.forget_task(loop.id)
            self._kick.set()
            self.changed()
            return
        # Until the restart policy has been applied the agent still counts as busy,
        # so that nobody sees it idle in between.
        self._settling.add(loop.id)
        self._loops.pop(loop.id, None)
        self._kick.set()
        try:
            await self._after(loop)
        except Exception:
            self.runtime.forget_task(loop.id)  # whatever the store holds: read again
            raise
        finally:
            self._settling.discard(loop.id)
            self.changed()

    async def _after(self, loop: TaskLoop) -> None:
        """Apply the restart policy to a task that ended, or settle it."""
        record = loop.record
        policy = self.definition.restart
        retry = (
            (record.state is TaskState.FAILED and loop.retryable
             and policy.policy in ("on-failure", "always"))
            or (record.state is TaskState.DONE and policy.policy == "always")
        ) and policy.allows(record.attempt)
        if not retry:
            self.runtime.settle(record)
            return
        delay = policy.backoff(record.attempt + 1)
        if record.state is TaskState.FAILED:
            await loop.set_state_surely(TaskState.QUEUED, attempt=record.attempt + 1)
            again = record
        else:
            self.runtime.settle(record)
            again = await self.runtime.create_task(
                self.name, record.instruction, created_by="restart-policy",
                parent_id=record.id, attempt=record.attempt + 1, submit=False)
        self.runtime.events.emit("task.retry_scheduled", agent=self.name, task_id=again.id,
                                 data={"delay_s": delay, "attempt": again.attempt,
                                       "after": record.state.value})
        self._retries[again.id] = (again, self._scope.spawn(self._retry_later(again, delay),
                                                            name=f"retry:{again.id}"))

    async def _retry_later(self, record: TaskRecord, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            self._retries.pop(record.id, None)
        self.submit(record)

    # the agent loop ----------------------------------------------------
    async def _dispatch(self) -> None:
        limit = self.definition.max_concurrent_tasks
        _ = self.model  # resolve the model up front: a bad spec fails the agent, not a task
        while True:
            await self._open.wait()
            while self._queue and len(self._loops) < limit and self._open.is_set():
                self._start_loop(self._queue.popleft())
            self._kick.clear()
            await self._kick.wait()

    async def _supervise(self) -> None:
        policy = self.definition.restart
        while True:
            try:
                await self._dispatch()
                return
            except Exception as exc:
                self.runtime.events.emit("agent.crashed", agent=self.name, data={
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                    "config_error": isinstance(exc, WakefulError)})
                await self._interrupt_loops()
                await self.set_state(AgentState.FAILED, reason=f"{type(exc).__name__}: {exc}")
                if (policy.policy == "never" or not policy.allows(self.record.restarts)
                        or isinstance(exc, WakefulError)):
                    self.runtime.events.emit("agent.gave_up", agent=self.name, data={
                        "restarts": self.record.restarts})
                    return
                self.record.restarts += 1
                delay = policy.backoff(self.record.restarts)
                self.runtime.events.emit("agent.restarting", agent=self.name, data={
                    "delay_s": delay, "restart": self.record.restarts})
                await asyncio.sleep(delay)
                await self.set_state(AgentState.RUNNING, reason="restarted by policy")

    async def _interrupt_loops(self) -> None:
        """Cancel running task loops so that they go back to the queue, resumable."""
        loops = list(self._loops.values())
        for loop, task in loops:
            loop.interrupted = True
            task.cancel()
        await asyncio.gather(*(task for _, task in loops), return_exceptions=True)
        for loop, _ in reversed(loops):
            if loop.record.state is TaskState.QUEUED:
                self._queue.appendleft(loop.record)
            else:  # its requeue did not land here (the store was out): whoever queues
                self.runtime.forget_task(loop.id)  # it again, a read of the store finds it

    # lifecycle ---------------------------------------------------------
    def launch(self, scope: TaskScope) -> None:
        self._supervisor = scope.spawn(self._supervise(), name=f"agent:{self.name}")

    async def halt(self) -> None:
        """Stop the agent loop and interrupt its tasks (they stay queued, resumable)."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        await self._interrupt_loops()
        # A task waiting out a retry's backoff is queued in the store: it goes back to
        # the queue with the rest (it was held nowhere, so never run again, before).
        pending = list(self._retries.values())
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
        self._retries.clear()
        self._queue.extend(record for record, _ in pending)

    async def close(self) -> None:
        await self.halt()
        await self._scope.aclose()

    def take_queue(self) -> list[TaskRecord]:
        queued = list(self._queue)
        self._queue.clear()
        return queued

    def task_loop(self, task_id: str) -> tuple[TaskLoop, asyncio.Task[None]] | None:
        return self._loops.get(task_id)

    async def drop_queued(self, task_id: str) -> TaskRecord | None:
        """Take a task that waits to start (queued, or waiting out a retry backoff)."""
        for record in self._queue:
            if record.id == task_id:
                self._queue.remove(record)
                return record
        pending = self._retries.pop(task_id, None)
        if pending is None:
            return None
        record, timer = pending
        timer.cancel()
        await asyncio.gather(timer, return_exceptions=True)
        return record


def new_task_record(agent: str, instruction: str, **fields: object) -> TaskRecord:
    """A new queued task; unless it joins another's trace, it starts its own."""
    record = TaskRecord(id=new_id("t"), agent=agent, instruction=instruction,
                        **fields)  # type: ignore[arg-type]
    record.trace_id = record.trace_id or record.id
    return record
