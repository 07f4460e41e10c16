"""Agents, tasks, loops, lifecycle, supervision."""

from wakeful.core.states import AgentState, TaskState
from wakeful.runtime.context import ToolContext
from wakeful.runtime.runtime import AgentStatus, Runtime

__all__ = ["AgentState", "AgentStatus", "Runtime", "TaskState", "ToolContext"]
