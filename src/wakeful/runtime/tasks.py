"""Making and finding tasks, as methods of :class:`~wakeful.runtime.runtime.Runtime`.

A task is made (checked, linked to the task that asked for it, given its trace), stored,
announced, and handed to its agent when this worker runs that agent; otherwise the
worker that does picks it up from the store. Finding a task looks at the loops this
worker runs first (their record is the freshest), then at the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from wakeful.core.context import CURRENT_TASK, CURRENT_TRACE
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState, check_task_transition
from wakeful.errors import UnknownTaskError, WakefulError
from wakeful.runtime.agent import new_task_record
from wakeful.text import describe_text

if TYPE_CHECKING:
    from wakeful.observe.events import EventLog
    from wakeful.runtime.agent import AgentRunner
    from wakeful.runtime.ownership import Ownership
    from wakeful.store.base import Store

MAX_INSTRUCTION_CHARS = 100_000


def instruction_problem(instruction: str) -> str | None:
    """Why an instruction cannot make a task (empty, or text the store cannot hold, such
    as bytes that were not UTF-8 on a command line), or None."""
    if not instruction.strip():
        return "the instruction is empty"
    problem = describe_text(instruction)
    return None if problem is None else f"the instruction {problem}"


class TaskMaking:
    """Create, announce, cancel (when nobody runs it) and find tasks."""

    if TYPE_CHECKING:  # what the runtime provides
        store: Store
        events: EventLog
        ownership: Ownership
        agents: dict[str, AgentRunner]
        task_ids: Callable[[TaskRecord], str] | None
        _known: set[str]

        def agent(self, name: str) -> AgentRunner: ...

        def settle(self, record: TaskRecord) -> None: ...

    async def create_task(
        self,
        agent: str,
        instruction: str,
        *,
        created_by: str = "api",
        parent_id: str | None = None,
        attempt: int = 0,
        submit: bool = True,
        trace_id: str | None = None,
        cause_id: str | None = None,
    ) -> TaskRecord:
        """Queue a task for ``agent``; it starts when the agent has a free slot.

        Called from inside a task (a tool delegating work), the new task is linked to
        the calling one: its parent and cause default to the caller, and it joins the
        caller's trace, so the inspector can show the whole causal tree.
        """
        record = self.new_task(agent, instruction, created_by=created_by,
                               parent_id=parent_id, attempt=attempt, trace_id=trace_id,
                               cause_id=cause_id)
        self._known.add(record.id)
        await self.store.create_task(record)
        self.launch_task(record, submit=submit)
        return record

    def new_task(
        self,
        agent: str,
        instruction: str,
        *,
        created_by: str = "api",
        parent_id: str | None = None,
        attempt: int = 0,
        trace_id: str | None = None,
        cause_id: str | None = None,
    ) -> TaskRecord:
        """A new task's record, checked but not stored yet (for writers that store it in
        the same transaction as something else; then call :meth:`launch_task`)."""
        self.agent(agent)
        problem = instruction_problem(instruction)
        if problem is not None:
            raise WakefulError(f"task for agent {agent!r}: {problem}")
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise WakefulError(f"task for agent {agent!r}: the instruction is "
                               f"{len(instruction)} characters; the limit is "
                               f"{MAX_INSTRUCTION_CHARS}")
        caller = CURRENT_TASK.get()
        parent_id = parent_id or caller
        record = new_task_record(agent, instruction, created_by=created_by,
                                 parent_id=parent_id, attempt=attempt,
                                 cause_id=cause_id or parent_id)
        record.trace_id = trace_id or CURRENT_TRACE.get() or record.trace_id
        if self.task_ids is not None:
            record.id = self.task_ids(record)
            record.trace_id = trace_id or CURRENT_TRACE.get() or record.id
        return record

    def launch_task(self, record: TaskRecord, *, submit: bool = True) -> None:
        """Announce a stored new task and hand it to its agent, if this worker runs
        it. A task for an agent run elsewhere is not kept as seen here: were this
        worker to take that agent later, it would pass the task over as already
        taken, and it would stay queued for good."""
        if self.ownership.owns(record.agent):
            self._known.add(record.id)
        else:
            self._known.discard(record.id)
        self.events.emit("task.created", agent=record.agent, task_id=record.id, data={
            "instruction": record.instruction[:500], "created_by": record.created_by,
            "parent_id": record.parent_id}, correlation_id=record.trace_id,
            causation_id=record.cause_id)
        if submit and self.ownership.owns(record.agent):
            self.agent(record.agent).submit(record)

    async def _cancel_stored(self, record: TaskRecord) -> TaskRecord:
        check_task_transition(record.id, record.state, TaskState.CANCELLED)
        previous = record.state
        record.state = TaskState.CANCELLED
        record.finished_at = time.time()
        # Only a task nobody runs: a claim that won first makes this a no-op.
        await self.store.update_task(record.id, expect_state=previous.value,
                                     state=record.state.value, finished_at=record.finished_at)
        self.events.emit("task.state", agent=record.agent, task_id=record.id,
                         data={"from": previous.value, "to": "cancelled"})
        self.settle(record)
        return record

    async def get_task(self, task_id: str) -> TaskRecord:
        for agent in self.agents.values():
            found = agent.task_loop(task_id)
            if found is not None:
                return found[0].record
        record = await self.store.get_task(task_id)
        if record is None:
            raise UnknownTaskError(task_id)
        return record

