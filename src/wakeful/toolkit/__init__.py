"""What a tool is made of: the ``tool`` decorator and the registry, the context a call
gets, and the capabilities that context hands out.

It sits below the services (whose own tools are built from it) and above ``core``;
the built-in tool set and the default registry are in :mod:`wakeful.tools`.
"""

from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import Tool, ToolOutcome, ToolRegistry, make_tool, tool

__all__ = ["Tool", "ToolContext", "ToolOutcome", "ToolRegistry", "make_tool", "tool"]
