"""What a tool sees of the world when a task calls it.

A :class:`ToolContext` is made per task and holds only that task's identity and its
private ``scratch`` space; tasks never share one. Anything a tool does beyond its own
task goes through the runtime handle, i.e. through explicit, recorded operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime


@dataclass
class ToolContext:
    agent: str
    task_id: str
    runtime: Runtime
    scratch: dict[str, Any] = field(default_factory=dict)

    def emit(self, type: str, **data: Any) -> None:
        """Record an event attributed to this task."""
        self.runtime.events.emit(type, agent=self.agent, task_id=self.task_id, data=data)
