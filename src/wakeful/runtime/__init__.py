"""Agents, tasks, loops, lifecycle, supervision."""

from wakeful.core.states import AgentState, TaskState
from wakeful.core.team import AgentStatus
from wakeful.runtime.runtime import Runtime
from wakeful.toolkit.context import ToolContext

__all__ = ["AgentState", "AgentStatus", "Runtime", "TaskState", "ToolContext"]
