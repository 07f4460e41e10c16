"""``spawn_agent``: an agent that makes agents, within what it has itself.

Granted by ``can_spawn`` in the parent's file (``true``, or ``{max_agents: N}``). The
child may use only the parent's model and a subset of the parent's tools; it gets no
grant the parent lacks (``can_watch``, ``can_control``, ``can_spawn``); the project's
``agents:`` limits (``max``, ``max_spawned_per_agent``) and the parent's own
``max_agents`` bound how many there are. A refused spawn is a tool error naming the
rule, and an ``agent.spawn_refused`` event. A spawned agent is stored like any agent
made at run time (it survives a restart, every worker runs it) with its parent
recorded.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from wakeful.errors import AccessDeniedError
from wakeful.toolkit.context import ToolContext, caller_address
from wakeful.toolkit.registry import Tool, tool


@tool
async def spawn_agent(
    ctx: ToolContext,
    name: Annotated[str, Field(min_length=1, max_length=64, description=(
        "the new agent's name: lower case, digits, '-' and '_'"))],
    instructions: Annotated[str, Field(max_length=20_000, description="its instructions")],
    role: Annotated[str, Field(max_length=200)] = "",
    tools: Annotated[list[str] | None, Field(description=(
        "its tools: some of yours (default: none)"))] = None,
    model: Annotated[str | None, Field(description="its model: yours (the default)")
                     ] = None,
    first_task: Annotated[str | None, Field(max_length=100_000, description=(
        "a task to start on it at once"))] = None,
) -> dict[str, Any]:
    """Make a new agent that runs beside you, with some of your tools and your model."""
    fields: dict[str, Any] = {"name": name, "instructions": instructions, "role": role,
                              "tools": tools or []}
    if model is not None:
        fields["model"] = model
    try:
        made = await ctx.team.spawn_agent(ctx.agent, fields, by=caller_address(ctx))
    except AccessDeniedError as exc:
        ctx.emit("agent.spawn_refused", name=name, why=str(exc))
        raise AccessDeniedError(f"{exc}; this was refused and recorded") from None
    result: dict[str, Any] = {"agent": made.name, "model": made.model,
                              "tools": made.tools}
    if first_task:
        task = await ctx.team.create_task(made.name, first_task,
                                             created_by=caller_address(ctx))
        result["task_id"] = task.id
    return result


SPAWN_TOOLS: tuple[Tool, ...] = (spawn_agent,)
