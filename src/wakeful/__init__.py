"""Wakeful: an asynchronous multi-agent runtime for LLM agents.

Every agent runs its own loop and can run several isolated tasks at once; state lives
in a durable store so a killed process carries on where it stopped.
"""

from wakeful.errors import (
    ConfigError,
    IllegalTransitionError,
    ModelError,
    UnknownAgentError,
    UnknownTaskError,
    WakefulError,
)
from wakeful.models import Message, Model, ModelRegistry, ScriptedModel
from wakeful.project import AgentDefinition, Project, load_project
from wakeful.resources import Access
from wakeful.runtime import AgentState, Runtime, TaskState, ToolContext
from wakeful.runtime.build import build_runtime
from wakeful.store import Store, open_store
from wakeful.store.sqlite import SQLiteStore
from wakeful.tools import Tool, ToolRegistry, tool

__version__ = "0.1.0"

__all__ = [
    "Access",
    "AgentDefinition",
    "AgentState",
    "ConfigError",
    "IllegalTransitionError",
    "Message",
    "Model",
    "ModelError",
    "ModelRegistry",
    "Project",
    "Runtime",
    "SQLiteStore",
    "ScriptedModel",
    "Store",
    "TaskState",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "UnknownAgentError",
    "UnknownTaskError",
    "WakefulError",
    "__version__",
    "build_runtime",
    "load_project",
    "open_store",
    "tool",
]
