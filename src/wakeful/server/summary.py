"""What the overview page says happened: totals, what runs now, failures, activity.

Totals come from the store (every task ever run, so they survive a restart); "this
run" comes from the runtime's ledger in memory. The activity feed is the event log
filtered to what a person cares about at a glance: tasks starting and ending, agents
changing state (a person's control actions included), mail, alerts and trouble.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from wakeful.core.records import Event, TaskRecord
from wakeful.core.states import TaskState
from wakeful.runtime.runtime import Runtime
from wakeful.server import views
from wakeful.store.sqlite import SQLiteStore

ACTIVITY_TYPES = ("task.created", "task.state", "agent.state", "mail.sent", "mail.delegated",
                  "monitor.alert", "resource.deadlock", "budget.exhausted", "agent.gave_up",
                  "agent.restarting", "mail.dead_lettered", "timer.fired", "tool.error",
                  "model.error", "task.failed", "task.woke")
# task.state rows worth showing: a start and every end (not each wait and resume).
_SHOWN_TASK_STATES = {"done", "failed", "cancelled"}
LIVE_STATES = (TaskState.QUEUED, TaskState.RUNNING, TaskState.WAITING)


def _empty_totals() -> dict[str, Any]:
    return {"tasks": 0, "by_state": {}, "input_tokens": 0, "output_tokens": 0, "tokens": 0,
            "cost": 0.0, "tool_calls": 0}


def _add(into: dict[str, Any], state: str, count: int, tin: int, tout: int, cost: float,
         calls: int) -> None:
    into["tasks"] += count
    into["by_state"][state] = into["by_state"].get(state, 0) + count
    into["input_tokens"] += tin
    into["output_tokens"] += tout
    into["tokens"] += tin + tout
    into["cost"] = round(into["cost"] + cost, 8)
    into["tool_calls"] += calls


async def totals(runtime: Runtime) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Tasks by state, tokens, cost and tool calls: over all agents, and per agent."""
    store = runtime.store
    rows: list[tuple[str, str, int, int, int, float, int]]
    if isinstance(store, SQLiteStore):
        def query(conn: sqlite3.Connection) -> list[tuple[str, str, int, int, int, float, int]]:
            return conn.execute(
                "SELECT agent, state, COUNT(*), COALESCE(SUM(input_tokens), 0), "
                "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost), 0), "
                "COALESCE(SUM(tool_calls), 0) FROM tasks GROUP BY agent, state").fetchall()
        rows = await store.read(query)
    else:
        grouped: dict[tuple[str, str], list[TaskRecord]] = {}
        for record in await store.list_tasks():
            grouped.setdefault((record.agent, record.state.value), []).append(record)
        rows = [(agent, state, len(found), sum(t.input_tokens for t in found),
                 sum(t.output_tokens for t in found), sum(t.cost for t in found),
                 sum(t.tool_calls for t in found))
                for (agent, state), found in grouped.items()]
    overall = _empty_totals()
    per_agent: dict[str, dict[str, Any]] = {name: _empty_totals() for name in runtime.agents}
    for agent, state, count, tin, tout, cost, calls in rows:
        _add(overall, state, count, tin, tout, cost, calls)
        _add(per_agent.setdefault(agent, _empty_totals()), state, count, tin, tout, cost, calls)
    return overall, per_agent


def _notable(event: Event) -> bool:
    if event.type != "task.state":
        return True
    to = event.data.get("to")
    return to in _SHOWN_TASK_STATES or (to == "running" and event.data.get("from") == "queued")


async def activity(runtime: Runtime, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` notable events, oldest first."""
    await runtime.store.flush()
    page = await runtime.store.query_events(types=ACTIVITY_TYPES, newest=True,
                                            limit=limit * 4)
    found = [e for e in page if _notable(e)]
    return [views.event_view(e) for e in found[-limit:]]


async def failures(runtime: Runtime, limit: int) -> list[dict[str, Any]]:
    records = await runtime.store.list_tasks(states=[TaskState.FAILED])
    records.sort(key=lambda t: t.finished_at or t.updated_at)
    return [{"id": t.id, "agent": t.agent, "instruction": t.instruction,
             "error": t.error, "error_kind": t.error_kind, "finished_at": t.finished_at,
             "trace_id": t.trace_id, "attempt": t.attempt}
            for t in records[-limit:]][::-1]


async def running_now(runtime: Runtime, limit: int) -> tuple[list[dict[str, Any]], int]:
    records = await runtime.store.list_tasks(states=list(LIVE_STATES))
    active = [r for r in records if r.state is not TaskState.QUEUED]
    queued = len(records) - len(active)
    return [views.task_view(r, runtime) for r in active[:limit]], queued
