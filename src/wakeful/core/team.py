"""What a tool (or a person's view) sees of the team: each agent's status, and what a
control action did. Plain records, below the services and the tool context that hand
them out (see :mod:`wakeful.toolkit.capabilities`), made by the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from wakeful.core.records import TaskRecord
from wakeful.core.states import AgentState

Action = Literal["pause", "resume", "sleep", "wake", "stop", "start", "restart", "cancel",
                 "start_task", "restart_task"]
ACTIONS: tuple[Action, ...] = get_args(Action)


@dataclass(frozen=True, slots=True)
class AgentStatus:
    name: str
    state: AgentState
    reason: str
    restarts: int
    running: int
    queued: int
    max_concurrent_tasks: int


@dataclass(frozen=True, slots=True)
class ControlOutcome:
    """What a control action did: its id, and the task it touched or made."""

    id: str
    action: Action
    agent: str
    by: str
    reason: str
    task: TaskRecord | None = None
    undo: dict[str, str] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "agent": self.agent, "by": self.by,
                "reason": self.reason, "task_id": self.task.id if self.task else None,
                "undo": self.undo}
