"""The tool registry's old address, kept for code that imports it from here (the
registry lives in :mod:`wakeful.toolkit.registry`, below the services)."""

from wakeful.toolkit.registry import (
    MAX_ARGUMENT_CHARS,
    AccessFunction,
    ErrorKind,
    Tool,
    ToolFunction,
    ToolOutcome,
    ToolRegistry,
    make_tool,
    tool,
)

__all__ = ["MAX_ARGUMENT_CHARS", "AccessFunction", "ErrorKind", "Tool", "ToolFunction",
           "ToolOutcome", "ToolRegistry", "make_tool", "tool"]
