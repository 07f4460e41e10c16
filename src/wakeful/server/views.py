"""How runtime objects look in the API: plain JSON-ready dicts.

Agent status comes from the live runtime (what each task is waiting on is only known
in memory), everything else from the store, so the API shows what survived a crash.
What the sleep/wake layer adds (``runtime.scheduler``) is shown when it is there and
skipped when it is not.
"""

from __future__ import annotations

from typing import Any

from wakeful.core.mail import Mail
from wakeful.core.records import AgentTotals, Event, TaskRecord
from wakeful.runtime.agent import AgentRunner
from wakeful.runtime.runtime import Runtime


def _scheduler(runtime: Runtime) -> Any:
    return getattr(runtime, "scheduler", None)


def next_wake(runtime: Runtime, agent: str) -> float | None:
    """When the agent's next timer fires (its next wake), if a scheduler knows."""
    scheduler = _scheduler(runtime)
    method = getattr(scheduler, "next_for_agent", None)
    if not callable(method):
        return None
    try:
        timer = method(agent)
    except Exception:  # a view must never break on a part still being built
        return None
    due = getattr(timer, "next_due", None)
    return float(due) if isinstance(due, int | float) else None


def timers(runtime: Runtime, agent: str) -> list[dict[str, Any]]:
    """The agent's active timers (schedules, sleeps, waits), as the scheduler shows them."""
    scheduler = _scheduler(runtime)
    method = getattr(scheduler, "active", None)
    if not callable(method):
        return []
    try:
        found = [t for t in method() if getattr(t, "agent", None) == agent]
        out = []
        for timer in found:
            data = dict(timer.to_dict())
            describe = getattr(timer, "describe_action", None)
            if callable(describe):
                data["does"] = describe()
            due = getattr(timer, "next_due", None)
            data["next_due_ts"] = due if isinstance(due, int | float) else None
            out.append(data)
        return out
    except Exception:
        return []


def agent_summary(runtime: Runtime, runner: AgentRunner) -> dict[str, Any]:
    definition = runner.definition
    waiting = []
    for record in runner.running_tasks:
        found = runner.task_loop(record.id)
        on = found[0].waiting_on if found else None
        if on:
            waiting.append({"task_id": record.id, "on": on})
    return {
        "name": runner.name,
        "role": definition.role,
        "state": runner.state.value,
        "reason": runner.record.reason,
        "since": runner.record.updated_at,
        "restarts": runner.record.restarts,
        "running": len(runner.running_tasks),
        "queued": len(runner.queued_tasks),
        "waiting": waiting,
        "max_concurrent_tasks": definition.max_concurrent_tasks,
        "next_wake": next_wake(runtime, runner.name),
    }


def agent_definition(runtime: Runtime, runner: AgentRunner) -> dict[str, Any]:
    d = runner.definition
    return {
        "role": d.role,
        "instructions": d.instructions[:4000],
        "model": d.model or runtime.default_model,
        "tools": list(d.tools),
        "max_concurrent_tasks": d.max_concurrent_tasks,
        "max_steps": d.max_steps,
        "restart": d.restart.model_dump(),
        "budget": d.budget.model_dump(exclude_none=True),
        "answer_mail": d.answer_mail,
        "schedule": [s.model_dump(exclude_none=True) for s in d.schedule],
        "can_control": list(d.can_control),
        "made_at_run_time": d.name in runtime.admin.stored_names(),
    }


def task_view(record: TaskRecord, runtime: Runtime | None = None) -> dict[str, Any]:
    waiting_on = None
    max_steps = None
    if runtime is not None:
        runner = runtime.agents.get(record.agent)
        if runner is not None:
            max_steps = runner.definition.max_steps
            found = runner.task_loop(record.id)
            if found is not None:
                waiting_on = found[0].waiting_on
    return {
        "id": record.id, "agent": record.agent, "state": record.state.value,
        "instruction": record.instruction, "created_at": record.created_at,
        "started_at": record.started_at, "finished_at": record.finished_at,
        "updated_at": record.updated_at, "step": record.step, "max_steps": max_steps,
        "attempt": record.attempt, "result": record.result, "error": record.error,
        "error_kind": record.error_kind, "parent_id": record.parent_id,
        "created_by": record.created_by, "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens, "tool_calls": record.tool_calls,
        "cost": record.cost, "trace_id": record.trace_id, "cause_id": record.cause_id,
        "waiting_on": waiting_on,
        "truncated": record.truncated,  # its final answer was cut off by the output limit
        # reported by the task itself (report_progress), where the runtime records it
        "progress": getattr(record, "progress", None),
        "progress_note": getattr(record, "progress_note", None),
    }


def event_view(event: Event) -> dict[str, Any]:
    return {"id": event.id, "type": event.type, "agent": event.agent,
            "task_id": event.task_id, "ts": event.ts, "data": event.data,
            "trace": event.correlation_id, "cause": event.causation_id}


def mail_view(mail: Mail) -> dict[str, Any]:
    return mail.model_dump(mode="json")


async def agent_usage(runtime: Runtime, agent: str) -> dict[str, Any]:
    """Tokens and cost over every task the agent ever ran (from the store), and this
    run's share (from memory)."""
    totals = (await runtime.store.agent_totals(agent)).get(agent, AgentTotals())
    tasks, cost, tool_calls = totals.tasks, totals.cost, totals.tool_calls
    input_tokens, output_tokens = totals.input_tokens, totals.output_tokens
    this_run = runtime.usage.by_agent.get(agent)
    return {"tasks": tasks, "input_tokens": input_tokens, "output_tokens": output_tokens,
            "tokens": input_tokens + output_tokens, "cost": round(cost, 8),
            "tool_calls": tool_calls,
            "this_run": this_run.as_dict() if this_run is not None else None}
