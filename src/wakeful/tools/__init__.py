"""The tool registry and the built-in tools agents call."""

from wakeful.tools.registry import Tool, ToolOutcome, ToolRegistry, make_tool, tool

__all__ = ["Tool", "ToolOutcome", "ToolRegistry", "make_tool", "tool"]
