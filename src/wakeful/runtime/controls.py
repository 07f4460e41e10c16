"""What a person (or an agent with the right tools) does to agents and tasks: pause,
resume, sleep, wake, stop, start, restart, cancel.

Any worker can be asked, whichever worker runs the agent: the one that owns it carries
the command out at once; any other writes it to the store, and the owner takes it
(exactly once) within ``poll_interval_s`` and carries it out there. So the web UI and
the CLI work the same on a team spread over several workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

import structlog

from wakeful.core.records import TaskRecord
from wakeful.core.states import AgentState, TaskState, check_task_transition
from wakeful.errors import UnknownTaskError, WakefulError

if TYPE_CHECKING:
    from wakeful.core.scope import TaskScope
    from wakeful.observe.events import EventLog
    from wakeful.runtime.agent import AgentRunner
    from wakeful.runtime.ownership import Ownership
    from wakeful.schedule.waits import Condition, Waits
    from wakeful.store.base import Store

log = structlog.get_logger("wakeful.controls")

USER_STOP = "stopped by a person"


class AgentControls:
    """Lifecycle commands, as methods of :class:`~wakeful.runtime.runtime.Runtime`."""

    if TYPE_CHECKING:  # what the runtime provides
        ownership: Ownership
        store: Store
        events: EventLog
        waits: Waits
        agents: dict[str, AgentRunner]
        _scope: TaskScope

        def agent(self, name: str) -> AgentRunner: ...

        def forget_task(self, task_id: str) -> None: ...

        def settle(self, record: TaskRecord) -> None: ...

        async def _load_queued(self, agent: str | None = None,
                               agents: Collection[str] | None = None) -> None: ...

        async def _cancel_stored(self, record: TaskRecord) -> TaskRecord: ...

    async def _forwarded(self, name: str, command: str,
                         argument: str | None = None) -> bool:
        """Not this worker's agent: leave the command for its owner. True if so."""
        self.agent(name)  # an unknown agent is an error here, not later
        if self.ownership.owns(name):
            return False
        await self.store.request_command(name, command, argument)
        self.events.emit("agent.command_forwarded", agent=name,
                         data={"command": command, "argument": argument})
        return True

    async def pause_agent(self, name: str, reason: str = "paused by a person") -> None:
        if not await self._forwarded(name, "pause", reason):
            await self.agent(name).set_state(AgentState.PAUSED, reason)

    async def resume_agent(self, name: str, reason: str = "resumed") -> None:
        if not await self._forwarded(name, "resume", reason):
            await self.agent(name).set_state(AgentState.RUNNING, reason)

    async def sleep_agent(self, name: str, reason: str = "asleep", *,
                          until: float | None = None,
                          wake_on: Iterable[Condition] = ()) -> None:
        """Put an agent to sleep: its tasks stop at their next step boundary and no new
        one starts. It wakes when a person (or :meth:`wake_agent`) wakes it, at
        ``until`` (epoch seconds, on the runtime's clock; a durable timer), at the first
        of the ``wake_on`` events, or when one of its schedules comes due. (Forwarded
        to another worker, only a plain sleep: its owner is asked to sleep it.)"""
        conditions = list(wake_on)
        if until is None and not conditions and await self._forwarded(name, "sleep", reason):
            return
        await self.waits.sleep_agent(name, reason, until=until, wake_on=conditions)

    async def wake_agent(self, name: str, reason: str = "woken") -> None:
        if not await self._forwarded(name, "wake", reason):
            await self.waits.wake_agent(name, reason)

    async def stop_agent(self, name: str) -> None:
        """Stop an agent: its running tasks go back to its queue and stay there."""
        if await self._forwarded(name, "stop"):
            return
        agent = self.agent(name)
        await agent.set_state(AgentState.STOPPED, USER_STOP)
        await agent.halt()
        for record in agent.take_queue():
            self.forget_task(record.id)

    async def start_agent(self, name: str) -> None:
        """Start a stopped or failed agent again; its queued tasks resume."""
        if await self._forwarded(name, "start"):
            return
        agent = self.agent(name)
        await agent.set_state(AgentState.RUNNING, "started by a person")
        await agent.halt()
        agent.record.restarts = 0
        await self._load_queued(agent=name)
        agent.launch(self._scope)

    async def restart_agent(self, name: str) -> None:
        if await self._forwarded(name, "restart"):
            return
        if self.agent(name).state is not AgentState.STOPPED:
            await self.stop_agent(name)
        await self.start_agent(name)

    async def cancel_task(self, task_id: str) -> TaskRecord:
        """Cancel a task that has not ended, and the tasks it delegated that have not
        ended either (a remote A2A agent's forwarding task with them): at once if this
        worker runs or holds them; a task another worker runs is cancelled by that
        worker (the record returned is the task as it is now)."""
        record = await self._cancel_one(task_id)
        for child in await self.store.child_tasks([task_id]):
            if not child.state.ended and child.created_by.endswith(f"/{task_id}"):
                try:
                    await self.cancel_task(child.id)
                except WakefulError as exc:  # ended meanwhile: nothing to cancel
                    log.info("delegated task not cancelled", task=child.id, error=str(exc))
        return record

    async def _cancel_one(self, task_id: str) -> TaskRecord:
        for agent in self.agents.values():
            found = agent.task_loop(task_id)
            if found is not None:
                loop, task = found
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                self.settle(loop.record)
                if loop.record.state is TaskState.DONE:  # its last step landed first:
                    check_task_transition(task_id, TaskState.DONE,  # refused, as for any
                                          TaskState.CANCELLED)  # finished task
                return loop.record
            queued = await agent.drop_queued(task_id)
            if queued is not None:
                return await self._cancel_stored(queued)
        record = await self.store.get_task(task_id)
        if record is None:
            raise UnknownTaskError(task_id)
        if record.state in (TaskState.RUNNING, TaskState.WAITING) and await self._forwarded(
                record.agent, "cancel", task_id):
            return record
        return await self._cancel_stored(record)

    async def apply_commands(self) -> None:
        """Carry out the commands other workers left for the agents this one owns."""
        owned = list(self.ownership.held)
        for name, command, argument in await self.store.take_commands(owned):
            try:
                await self._command(name, command, argument)
            except WakefulError as exc:  # e.g. not allowed in the agent's state now
                self.events.emit("agent.command_failed", agent=name, data={
                    "command": command, "argument": argument, "error": str(exc)})

    async def _command(self, name: str, command: str, argument: str | None) -> None:
        if command == "cancel":
            if argument:
                await self.cancel_task(argument)
            return
        actions = {"stop": self.stop_agent, "start": self.start_agent,
                   "restart": self.restart_agent}
        if command in actions:
            await actions[command](name)
        elif command == "pause":
            await self.pause_agent(name, argument or "paused by a person")
        elif command == "resume":
            await self.resume_agent(name, argument or "resumed")
        elif command == "sleep":
            await self.sleep_agent(name, argument or "asleep")
        elif command == "wake":
            await self.wake_agent(name, argument or "woken")
        else:
            log.warning("unknown agent command", agent=name, command=command)
