"""Budgets: the point where a task stops instead of running away.

Checked by the task loop at each step boundary (before a model call), against the
task's own counters and the agent's ledger; a model call is also cut short when it
would outlast a wall-time budget. An exhausted budget is a final, non-retryable
failure whose message names the budget, its limit and what was used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from wakeful.core.records import TaskRecord
from wakeful.project.definitions import Budget, BudgetLimits
from wakeful.runtime.accounting import Spend

_UNITS = {"max_tokens": "tokens", "max_cost": "", "max_wall_s": "s", "max_tool_calls": "calls"}


@dataclass(frozen=True, slots=True)
class Exhausted:
    scope: str  # "task" or "agent"
    limit_name: str  # "max_tokens", "max_cost", "max_wall_s", "max_tool_calls"
    limit: float
    used: float

    def message(self, task_id: str, agent: str) -> str:
        unit = _UNITS[self.limit_name]
        used = f"{self.used:.6g}" if self.limit_name == "max_cost" else f"{self.used:.4g}"
        whose = f"task {task_id}" if self.scope == "task" else f"agent {agent!r}"
        return (f"budget exhausted: {whose} used {used}{' ' + unit if unit else ''} of its "
                f"budget.{self.scope}.{self.limit_name} of {self.limit:g}; task {task_id} "
                "stopped")

    def data(self) -> dict[str, object]:
        return {"scope": self.scope, "limit_name": self.limit_name, "limit": self.limit,
                "used": self.used}


def _first_exceeded(scope: str, limits: BudgetLimits, *, tokens: int, cost: float,
                    wall_s: float, tool_calls: int) -> Exhausted | None:
    checks: list[tuple[str, float | None, float]] = [
        ("max_tokens", limits.max_tokens, tokens),
        ("max_cost", limits.max_cost, cost),
        ("max_wall_s", limits.max_wall_s, wall_s),
        ("max_tool_calls", limits.max_tool_calls, tool_calls),
    ]
    for name, limit, used in checks:
        if limit is not None and used >= limit:
            return Exhausted(scope, name, float(limit), float(used))
    return None


def task_wall_s(record: TaskRecord, now: float | None = None) -> float:
    if record.started_at is None:
        return 0.0
    return (now or time.time()) - record.started_at


def check(budget: Budget, record: TaskRecord, agent_spent: Spend) -> Exhausted | None:
    """The first exceeded limit, task before agent, or None."""
    return _first_exceeded(
        "task", budget.task, tokens=record.input_tokens + record.output_tokens,
        cost=record.cost, wall_s=task_wall_s(record), tool_calls=record.tool_calls,
    ) or _first_exceeded(
        "agent", budget.agent, tokens=agent_spent.tokens, cost=agent_spent.cost,
        wall_s=agent_spent.wall_s, tool_calls=agent_spent.tool_calls)


def seconds_left(budget: Budget, record: TaskRecord, agent_spent: Spend
                 ) -> tuple[float, Exhausted] | None:
    """How long the next model call may take before a wall-time budget runs out,
    with the exhaustion to report if it does; None when no wall budget applies."""
    if budget.task.max_wall_s is None and budget.agent.max_wall_s is None:
        return None
    options: list[tuple[float, Exhausted]] = []
    if budget.task.max_wall_s is not None:
        limit = budget.task.max_wall_s
        options.append((limit - task_wall_s(record), Exhausted("task", "max_wall_s", limit,
                                                                limit)))
    if budget.agent.max_wall_s is not None:
        limit = budget.agent.max_wall_s
        options.append((limit - agent_spent.wall_s, Exhausted("agent", "max_wall_s", limit,
                                                              limit)))
    return min(options, key=lambda option: option[0]) if options else None


def has_agent_limits(budget: Budget) -> bool:
    limits = budget.agent
    return not (limits.max_tokens is None and limits.max_cost is None
                and limits.max_wall_s is None and limits.max_tool_calls is None)
