"""Control actions with a name on them: who did what to which agent or task, and why.

Every way to act on an agent or a task (a person in the web UI or the API, the CLI, an
agent's control tool, the monitor's escalation) comes through :meth:`Intervention.
control`, which records a ``control.ACTION`` event on the target agent (with ``by``,
``reason``, the target, and how to undo it), then carries the action out through
:mod:`wakeful.runtime.controls` (so it works whichever worker runs the agent). An undo
is a control action of its own, pointing at the one it undoes (``undoes``).

Each action gets an id (``c_...``) carried in its event's ``correlation_id``, so the
event can be found again to undo it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wakeful.core.records import Event, TaskRecord
from wakeful.core.team import ACTIONS, Action, ControlOutcome
from wakeful.errors import WakefulError
from wakeful.ids import new_id

if TYPE_CHECKING:
    from wakeful.observe.events import EventLog
    from wakeful.runtime.agent import AgentRunner
    from wakeful.schedule.waits import Condition
    from wakeful.store.base import Store

TASK_ACTIONS = frozenset({"cancel", "restart_task"})  # their target is a task id
UNDO: dict[str, Action] = {"pause": "resume", "sleep": "wake", "stop": "start",
                           "cancel": "restart_task"}
MAX_REASON_CHARS = 500


class UndoError(WakefulError):
    """A control action that cannot be undone (unknown, already undone, no undo)."""


def _clip(reason: str) -> str:
    reason = " ".join(reason.split())
    return reason[:MAX_REASON_CHARS] if reason else "no reason given"


class Intervention:
    """The front door of every control action, as methods of the runtime."""

    if TYPE_CHECKING:  # what the runtime provides
        store: Store
        events: EventLog

        def agent(self, name: str) -> AgentRunner: ...

        async def get_task(self, task_id: str) -> TaskRecord: ...

        async def create_task(self, agent: str, instruction: str, *, created_by: str = ...,
                              parent_id: str | None = ...) -> TaskRecord: ...

        async def pause_agent(self, name: str, reason: str = ...) -> None: ...

        async def resume_agent(self, name: str, reason: str = ...) -> None: ...

        async def sleep_agent(self, name: str, reason: str = ..., *,
                              until: float | None = ...,
                              wake_on: list[Condition] = ...) -> None: ...

        async def wake_agent(self, name: str, reason: str = ...) -> None: ...

        async def stop_agent(self, name: str) -> None: ...

        async def start_agent(self, name: str) -> None: ...

        async def restart_agent(self, name: str) -> None: ...

        async def cancel_task(self, task_id: str) -> TaskRecord: ...

    async def control(self, action: str, target: str, *, by: str, reason: str = "",
                      instruction: str | None = None, undoes: str | None = None,
                      problem: str | None = None) -> ControlOutcome:
        """Carry out ``action`` on ``target`` (an agent's name; a task id for
        ``cancel`` and ``restart_task``) on behalf of ``by``, and record it.
        ``instruction``: for ``start_task``; ``undoes``: the id of the control action
        this one undoes; ``problem``: the monitor's key for what it acted on."""
        if action not in ACTIONS:
            raise WakefulError(f"unknown control action {action!r} (actions: "
                               f"{', '.join(ACTIONS)})")
        act: Action = action
        why = _clip(reason)
        given = reason.strip() != ""

        def said(verb: str) -> str:
            return f"{verb} by {by}" + (f": {why}" if given else "")

        task: TaskRecord | None = None
        if act in TASK_ACTIONS:
            task = await self.get_task(target)
            agent = task.agent
        else:
            agent = self.agent(target).name
        made: TaskRecord | None = None
        if act == "pause":
            await self.pause_agent(agent, said("paused"))
        elif act == "resume":
            await self.resume_agent(agent, said("resumed"))
        elif act == "sleep":  # the reason is what the agent's sleep shows, as given
            await self.sleep_agent(agent, why if given else said("put to sleep"))
        elif act == "wake":
            await self.wake_agent(agent, said("woken"))
        elif act == "stop":
            await self.stop_agent(agent)
        elif act == "start":
            await self.start_agent(agent)
        elif act == "restart":
            await self.restart_agent(agent)
        elif act == "cancel":
            assert task is not None
            task = await self.cancel_task(task.id)
        elif act == "restart_task":
            assert task is not None
            made = await self.create_task(agent, task.instruction, created_by=by,
                                          parent_id=task.id)
        else:  # start_task
            if not instruction or not instruction.strip():
                raise WakefulError("start_task needs an instruction")
            made = await self.create_task(agent, instruction, created_by=by)
        control_id = new_id("c")
        undo = self._undo_of(act, agent, task)
        data: dict[str, Any] = {"action": act, "by": by, "reason": why, "target": target}
        if task is not None:
            data["task"] = task.id
            data["instruction"] = task.instruction[:200]
        if made is not None:
            data["started_task"] = made.id
        if undo is not None:
            data["undo"] = undo
        if undoes is not None:
            data["undoes"] = undoes
        if problem is not None:  # the monitor's problem key (acted on once)
            data["problem"] = problem
        self.events.emit(f"control.{act}", agent=agent, data=data, correlation_id=control_id)
        return ControlOutcome(control_id, act, agent, by, why, made or task, undo, data)

    @staticmethod
    def _undo_of(action: Action, agent: str, task: TaskRecord | None) -> dict[str, str] | None:
        undo = UNDO.get(action)
        if undo is None:
            return None
        target = task.id if undo in TASK_ACTIONS and task is not None else agent
        return {"action": undo, "target": target}

    def refuse_control(self, action: str, target: str, *, by: str, agent: str | None,
                       why: str) -> None:
        """Record a control action that was refused (no grant, no role)."""
        self.events.emit("control.refused", agent=agent, data={
            "action": action, "target": target, "by": by, "why": why})

    async def control_event(self, control_id: str) -> Event | None:
        """The event that recorded control action ``control_id``."""
        await self.store.flush()
        for event in await self.store.query_events(correlation_id=control_id,
                                                   type_prefix="control.", limit=10):
            if event.type != "control.refused":
                return event
        return None

    async def undone_by(self, agent: str, control_ids: set[str]) -> dict[str, str]:
        """Which of ``control_ids`` (of ``agent``) were undone: id -> who undid it."""
        await self.store.flush()
        found: dict[str, str] = {}
        for event in await self.store.query_events(agent=agent, type_prefix="control.",
                                                   limit=5000):
            undoes = event.data.get("undoes")
            if undoes in control_ids:
                found[undoes] = str(event.data.get("by"))
        return found

    async def undo_control(self, control_id: str, *, by: str, reason: str = ""
                           ) -> ControlOutcome:
        """Undo control action ``control_id``: resume after a pause, wake after a sleep,
        start after a stop, start a cancelled task again. Once."""
        event = await self.control_event(control_id)
        if event is None:
            raise UndoError(f"no control action {control_id!r}")
        undo = event.data.get("undo")
        if not isinstance(undo, dict):
            raise UndoError(f"{event.type.removeprefix('control.')} cannot be undone")
        if event.agent and control_id in await self.undone_by(event.agent, {control_id}):
            raise UndoError(f"control action {control_id} was undone already")
        return await self.control(undo["action"], undo["target"], by=by,
                                  reason=reason or f"undo of {event.type} ({control_id})",
                                  undoes=control_id)
