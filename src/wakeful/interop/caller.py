"""The A2A caller of a task, as a mail address a task can ask questions at.

A task started over A2A has a caller outside Wakeful. Its address is a person address
made from the task id (``person:a2a.TASK``): a question mailed there makes the A2A task
``input-required`` with that question as its status message, and the caller's next
message on the task is delivered as the reply. So asking the caller is ordinary mail,
durable and visible in the event log like any other request.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from pydantic import Field

from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import tool

CALLER_PREFIX = "person:a2a."


def caller_address(task_id: str) -> str:
    return f"{CALLER_PREFIX}{task_id}"


@tool
async def ask_caller(
    ctx: ToolContext,
    question: Annotated[str, Field(min_length=1, max_length=20_000,
                                   description="what you need to know from the caller")],
    timeout_s: Annotated[float | None, Field(default=None, gt=0, le=86_400, description=(
        "seconds to wait; default: the project's mailbox.request_timeout_s"))] = None,
) -> dict[str, Any]:
    """Ask the A2A caller who started this task a question and wait for the answer.

    Only for tasks started over A2A. The task shows as input-required to the caller
    until they answer.
    """
    step = ctx.loop.record.step if ctx.loop is not None else 0
    key = hashlib.sha256(question.encode()).hexdigest()[:20]
    async with ctx.waiting(f"an answer from the A2A caller to {question[:60]!r}"):
        reply = await ctx.mail.request(
            f"{ctx.agent}/{ctx.task_id}", caller_address(ctx.task_id), "input required",
            question, timeout=timeout_s, idempotency_key=f"{ctx.task_id}:{step}:ask:{key}")
    return {"answer": reply.mail.body}
