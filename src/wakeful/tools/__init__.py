"""The built-in tool set: the default registry (:func:`wakeful.tools.builtin.
default_tools`, which gathers the services' own tools), the team and control tools.
``tool``, ``Tool`` and the registry are made in :mod:`wakeful.toolkit` and offered
here too, as the public names project code imports."""

from wakeful.toolkit.registry import Tool, ToolOutcome, ToolRegistry, make_tool, tool

__all__ = ["Tool", "ToolOutcome", "ToolRegistry", "make_tool", "tool"]
