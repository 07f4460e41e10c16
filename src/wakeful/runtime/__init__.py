"""Agents, tasks, loops, lifecycle, supervision."""

from wakeful.runtime.context import ToolContext
from wakeful.runtime.runtime import AgentStatus, Runtime
from wakeful.runtime.states import AgentState, TaskState

__all__ = ["AgentState", "AgentStatus", "Runtime", "TaskState", "ToolContext"]
