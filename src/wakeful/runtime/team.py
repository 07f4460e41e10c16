"""What a tool may know and do about the rest of the team: the narrow capability a
tool's context hands out instead of the whole runtime (see
:class:`~wakeful.toolkit.context.ToolContext`).

A tool reads agents' definitions, states and running tasks, reads and starts tasks,
reads the event log, and asks for control actions and new agents; every one of those
goes through the runtime's own recorded operations (grants are checked by the tools
that call them, as before). What a tool cannot reach through it: the store's writes,
other agents' loops, the ownership of agents, the runtime's lifecycle.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from wakeful.core.records import AgentRecord, Event, TaskRecord
from wakeful.core.states import AgentState, TaskState

if TYPE_CHECKING:
    from wakeful.core.team import AgentStatus, ControlOutcome
    from wakeful.project.definitions import AgentDefinition
    from wakeful.runtime.runtime import Runtime


class Team:
    """The team as one tool call sees it (one per task context, cheap to make)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    # agents ---------------------------------------------------------------
    def names(self) -> Collection[str]:
        return self._runtime.agent_names()

    def definition(self, agent: str) -> AgentDefinition:
        """The agent's definition; UnknownAgentError (naming the known agents) if none."""
        return self._runtime.agent(agent).definition

    def state(self, agent: str) -> AgentState:
        return self._runtime.agent(agent).state

    def record(self, agent: str) -> AgentRecord | None:
        """The agent's saved state, or None if no such agent runs here."""
        runner = self._runtime.agents.get(agent)
        return None if runner is None else runner.record

    def running_tasks(self, agent: str) -> Sequence[TaskRecord]:
        """The agent's tasks this worker runs now (waiting ones included)."""
        runner = self._runtime.agents.get(agent)
        return () if runner is None else list(runner.running_tasks)

    def statuses(self) -> list[AgentStatus]:
        return self._runtime.statuses()

    # tasks ----------------------------------------------------------------
    async def get_task(self, task_id: str) -> TaskRecord:
        """The task as it is now; UnknownTaskError if there is none."""
        return await self._runtime.get_task(task_id)

    async def list_tasks(self, agent: str | None = None,
                         states: Sequence[TaskState] | None = None) -> list[TaskRecord]:
        return await self._runtime.store.list_tasks(agent=agent, states=states)

    async def create_task(self, agent: str, instruction: str, *, created_by: str
                          ) -> TaskRecord:
        """Queue a task (linked to the calling task: its parent, cause and trace)."""
        return await self._runtime.create_task(agent, instruction, created_by=created_by)

    async def person_of(self, task_id: str) -> str | None:
        """The person who started ``task_id``, or the task that delegated it, and so on."""
        seen: set[str] = set()
        current: str | None = task_id
        while current is not None and current not in seen and len(seen) < 20:
            seen.add(current)
            record = await self._runtime.store.get_task(current)
            if record is None:
                return None
            if record.created_by.startswith("person:"):
                return record.created_by
            current = record.parent_id
        return None

    # the event log --------------------------------------------------------
    async def events(self, **filters: Any) -> list[Event]:
        """Events matching ``filters`` (as :meth:`Store.query_events`), including those
        emitted a moment ago (queued writes are flushed first)."""
        await self._runtime.store.flush()
        return await self._runtime.store.query_events(**filters)

    # acting on agents -----------------------------------------------------
    async def control(self, action: str, target: str, *, by: str, **details: Any
                      ) -> ControlOutcome:
        """Carry out and record a control action (the caller checked the grant)."""
        return await self._runtime.control(action, target, by=by, **details)

    def refuse_control(self, action: str, target: str, *, by: str, agent: str | None,
                       why: str) -> None:
        self._runtime.refuse_control(action, target, by=by, agent=agent, why=why)

    async def spawn_agent(self, parent: str, fields: dict[str, Any], *, by: str
                          ) -> AgentDefinition:
        """Make an agent on behalf of ``parent``, within its spawn grant."""
        return await self._runtime.admin.spawn_agent(parent, fields, by=by)
