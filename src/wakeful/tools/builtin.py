"""Built-in tools every project can grant to its agents.

These are the explicit, recorded ways a task reaches beyond its own conversation:
looking at other agents and tasks. The mail tools live with the mailbox
(:mod:`wakeful.mailbox.tools`) and are part of :func:`default_tools`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import Field

from wakeful.core.states import TaskState
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import Tool, ToolRegistry, tool


@tool
def list_agents(ctx: ToolContext) -> list[dict[str, Any]]:
    """List every agent with its state and how many tasks it runs and has queued."""
    return [
        {"name": s.name, "state": s.state.value, "reason": s.reason, "running": s.running,
         "queued": s.queued}
        for s in ctx.team.statuses()
    ]


@tool
async def list_tasks(
    ctx: ToolContext,
    agent: Annotated[str | None, Field(description="only this agent's tasks")] = None,
    state: Annotated[TaskState | None, Field(description="only tasks in this state")] = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """List tasks (newest last) with their state, step and result so far."""
    records = await ctx.team.list_tasks(
        agent=agent, states=[state] if state else None)
    return [
        {"id": r.id, "agent": r.agent, "state": r.state.value, "step": r.step,
         "instruction": r.instruction[:200], "result": (r.result or "")[:200],
         "error": r.error}
        for r in records[-limit:]
    ]


@tool
async def get_task(ctx: ToolContext, task_id: str) -> dict[str, Any]:
    """Show one task: its state, progress, result or error."""
    r = await ctx.team.get_task(task_id)
    return {"id": r.id, "agent": r.agent, "state": r.state.value, "step": r.step,
            "instruction": r.instruction, "result": r.result, "error": r.error,
            "attempt": r.attempt}


@tool
def note(ctx: ToolContext, text: Annotated[str, Field(max_length=10_000)]) -> str:
    """Write a note in this task's private scratchpad (no other task can see it)."""
    notes: list[str] = ctx.scratch.setdefault("notes", [])
    notes.append(text)
    ctx.emit("task.note", text=text)
    return f"noted ({len(notes)} notes in this task)"


@tool
def read_notes(ctx: ToolContext) -> list[str]:
    """Read back the notes written earlier in this task."""
    notes: list[str] = ctx.scratch.get("notes", [])
    return notes


@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


@tool
def current_time() -> str:
    """The current time (UTC, ISO 8601)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


BUILTIN_TOOLS: tuple[Tool, ...] = (list_agents, list_tasks, get_task, note, read_notes,
                                   word_count, current_time)


def default_tools() -> ToolRegistry:
    from wakeful.approvals.questions import QUESTION_TOOLS
    from wakeful.mailbox.tools import MAIL_TOOLS
    from wakeful.resources.tools import RESOURCE_TOOLS
    from wakeful.schedule.escalation import ESCALATION_TOOLS
    from wakeful.schedule.tools import SCHEDULE_TOOLS
    from wakeful.tools.control import CONTROL_TOOLS
    from wakeful.tools.spawn import SPAWN_TOOLS

    return ToolRegistry((*BUILTIN_TOOLS, *MAIL_TOOLS, *RESOURCE_TOOLS, *SCHEDULE_TOOLS,
                          *QUESTION_TOOLS, *CONTROL_TOOLS, *ESCALATION_TOOLS,
                          *SPAWN_TOOLS))
