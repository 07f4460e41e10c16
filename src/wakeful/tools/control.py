"""Control tools: an agent acting on other agents and their tasks.

``pause_agent``, ``resume_agent``, ``cancel_task``, ``restart_agent``, ``wake_agent``
and ``start_task`` work only on the agents the caller's file grants with
``can_control`` (``["*"]``: every other agent). Anything else is refused: the model
gets an error saying what it may control, and a ``control.refused`` event is recorded.
Every action goes through the runtime's one front door
(:mod:`wakeful.runtime.intervention`), recorded with who did it (the calling task's
address, ``monitor/t_1``) and the reason the model gave.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from wakeful.errors import AccessDeniedError
from wakeful.toolkit.context import ToolContext, caller_address
from wakeful.toolkit.registry import Tool, tool

Reason = Annotated[str, Field(min_length=1, max_length=500,
                              description="why: recorded, and shown to the people watching")]
AgentName = Annotated[str, Field(min_length=1, max_length=64, description="the agent")]


_PHRASES = {"cancel": "cancel a task of", "start_task": "start a task on"}


def _check(ctx: ToolContext, action: str, target: str, agent: str) -> None:
    ctx.team.definition(agent)  # UnknownAgentError names the known agents
    definition = ctx.team.definition(ctx.agent)
    if definition.may_control(agent):
        return
    granted = [n for n in sorted(ctx.team.names()) if definition.may_control(n)]
    why = (f"agent {ctx.agent!r} may not {_PHRASES.get(action, action)} agent {agent!r} "
           f"(it may control: {', '.join(granted) or 'no agent'}; grant more with "
           "can_control in its agent file)")
    ctx.team.refuse_control(action, target, by=caller_address(ctx), agent=agent, why=why)
    raise AccessDeniedError(why + "; this was refused and recorded")


async def _act(ctx: ToolContext, action: str, agent: str, reason: str,
               target: str | None = None, instruction: str | None = None) -> dict[str, Any]:
    _check(ctx, action, target or agent, agent)
    done = await ctx.team.control(action, target or agent, by=caller_address(ctx),
                                     reason=reason, instruction=instruction)
    return {**done.to_dict(), "state": ctx.team.state(agent).value}


@tool
async def pause_agent(ctx: ToolContext, agent: AgentName, reason: Reason) -> dict[str, Any]:
    """Pause an agent: its tasks take no new step until it is resumed."""
    return await _act(ctx, "pause", agent, reason)


@tool
async def resume_agent(ctx: ToolContext, agent: AgentName, reason: Reason) -> dict[str, Any]:
    """Resume a paused agent."""
    return await _act(ctx, "resume", agent, reason)


@tool
async def wake_agent(ctx: ToolContext, agent: AgentName, reason: Reason) -> dict[str, Any]:
    """Wake a sleeping agent now."""
    return await _act(ctx, "wake", agent, reason)


@tool
async def restart_agent(ctx: ToolContext, agent: AgentName, reason: Reason
                        ) -> dict[str, Any]:
    """Restart an agent: its running tasks are interrupted and resumed after."""
    return await _act(ctx, "restart", agent, reason)


@tool
async def cancel_task(ctx: ToolContext, task_id: Annotated[str, Field(
        min_length=1, max_length=128)], reason: Reason) -> dict[str, Any]:
    """Cancel another agent's task (and the tasks it delegated)."""
    record = await ctx.team.get_task(task_id)
    if record.id == ctx.task_id:
        raise AccessDeniedError("a task cannot cancel itself: give your final answer instead")
    return await _act(ctx, "cancel", record.agent, reason, target=task_id)


@tool
async def start_task(ctx: ToolContext, agent: AgentName, instruction: Annotated[str, Field(
        min_length=1, max_length=100_000)], reason: Reason) -> dict[str, Any]:
    """Start a task on an agent (unlike delegate_task, its result does not come back)."""
    return await _act(ctx, "start_task", agent, reason, instruction=instruction)


CONTROL_TOOLS: tuple[Tool, ...] = (pause_agent, resume_agent, wake_agent, restart_agent,
                                   cancel_task, start_task)
