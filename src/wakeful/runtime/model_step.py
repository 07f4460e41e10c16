"""One model step of a task, and what is recorded around it: the budget check before
the call, the streamed call itself (tokens as live events, the step's figures as a
``model.call`` event, the wall-clock budget as a deadline) and the event for each tool
call. Kept apart from :mod:`wakeful.runtime.task_loop`, which decides what to do with
the reply; each function takes the task's loop, whose state it reads and reports on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, NoReturn

from wakeful.errors import ModelError
from wakeful.models.base import Completed, ModelResponse, TextDelta
from wakeful.models.calls import reporting_to
from wakeful.runtime import budget

if TYPE_CHECKING:
    from wakeful.runtime.task_loop import TaskLoop

RESULT_EXCERPT = 500


class TaskFailure(Exception):
    """Ends a task as failed. ``retryable`` says whether a restart policy may retry it."""

    def __init__(loop, kind: str, message: str, retryable: bool = True,
                 trace: str | None = None) -> None:
        super().__init__(message)
        loop.kind = kind
        loop.message = message
        loop.retryable = retryable
        loop.trace = trace


async def check_budget(loop: TaskLoop) -> None:
    """Fail the task, for good, if it or its agent has spent its budget."""
    definition = loop.agent.definition
    ledger = loop.agent.ledger
    if not ledger.loaded and budget.has_agent_limits(definition.budget):
        await ledger.load(loop.runtime.store)
    exhausted = budget.check(definition.budget, loop.record, ledger.spent)
    if exhausted is not None:
        budget_exhausted(loop, exhausted)


def budget_exhausted(loop: TaskLoop, exhausted: budget.Exhausted) -> NoReturn:
    """Record the exhausted budget and fail the task for good (no retry would help)."""
    loop.runtime.events.emit("budget.exhausted", agent=loop.agent.name, task_id=loop.id,
                             data=exhausted.data())
    raise TaskFailure("budget", exhausted.message(loop.id, loop.agent.name), False)


async def call_model(loop: TaskLoop, specs: list[Any]) -> ModelResponse:
    """One streamed model call: tokens go out as live events as they come, the reply's
    figures as one ``model.call`` event; the wall-clock budget bounds the call."""
    events = loop.runtime.events
    agent = loop.agent.name
    started = time.perf_counter()
    response: ModelResponse | None = None
    wall = budget.seconds_left(loop.agent.definition.budget, loop.record,
                               loop.agent.ledger.spent)

    def report(event_type: str, data: dict[str, Any]) -> None:
        events.emit(event_type, agent=agent, task_id=loop.id, data=data)

    deadline = None if wall is None else asyncio.timeout(max(0.0, wall[0]))
    try:
        with reporting_to(report):
            async with deadline or contextlib.nullcontext():
                async for item in loop.agent.model.stream(loop.messages, specs):
                    if isinstance(item, TextDelta):
                        events.emit("model.token", agent=agent, task_id=loop.id,
                                    data={"text": item.text}, persist=False)
                    elif isinstance(item, Completed):
                        response = item.response
    except TimeoutError:
        if wall is None or deadline is None or not deadline.expired():
            raise
        budget_exhausted(loop, wall[1])
    except ModelError as exc:
        events.emit("model.error", agent=loop.agent.name, task_id=loop.id,
                    data={"error": str(exc), "model": loop.agent.model.name,
                          "step": loop.record.step})
        raise
    if response is None:
        raise ModelError(f"model {loop.agent.model.name!r} ended its stream without a reply")
    events.emit("model.call", agent=loop.agent.name, task_id=loop.id, data={
        "model": response.model or loop.agent.model.name,
        "step": loop.record.step + 1,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "input_tokens": response.usage.input_tokens,
        "output_tokens": response.usage.output_tokens,
        "cost": response.cost,
        "finish_reason": response.finish_reason,
        "tool_calls": [c.name for c in response.message.tool_calls],
        **response.call_info,  # the provider's own figures: latency_ms, queued_ms...
    })
    return response


def record_tool(loop: TaskLoop, name: str, arguments: str, outcome: Any,
                latency_ms: float) -> None:
    """One event per tool call, its type naming how it ended (refused, bad arguments,
    denied, failed or done), with excerpts of its arguments and result."""
    kind = outcome.error_kind
    event_type = {None: "tool.call", "unknown": "tool.refused", "forbidden": "tool.refused",
                  "invalid_json": "tool.invalid_args", "invalid_args": "tool.invalid_args",
                  "too_large": "tool.invalid_args", "denied": "tool.denied"
                  }.get(kind, "tool.error")
    data: dict[str, Any] = {"tool": name, "arguments": arguments[:RESULT_EXCERPT],
                            "ok": outcome.ok, "result": outcome.content[:RESULT_EXCERPT],
                            "latency_ms": round(latency_ms, 3)}
    if kind is not None:
        data["reason"] = kind
    if outcome.traceback:
        data["traceback"] = outcome.traceback
    loop.runtime.events.emit(event_type, agent=loop.agent.name, task_id=loop.id, data=data)
