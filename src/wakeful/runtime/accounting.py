"""What model calls cost: summed per task (in the task row), per agent and per run.

Per task, tokens, cost and tool calls are columns of the task, committed with each
step. Per agent, an :class:`AgentLedger` adds up every task the agent ever ran (loaded
from the store once, then kept current), because an agent budget must hold across
restarts of the process. Per run, :class:`RunUsage` adds up this process's calls and
is recorded in the ``run.stopped`` event.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from wakeful.store.base import Store


@dataclass(slots=True)
class Spend:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    tool_calls: int = 0
    wall_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, *, input_tokens: int, output_tokens: int, cost: float | None,
            tool_calls: int, wall_s: float) -> None:
        self.calls += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost += cost or 0.0
        self.tool_calls += tool_calls
        self.wall_s += wall_s

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost"] = round(self.cost, 8)
        data["wall_s"] = round(self.wall_s, 3)
        return data


class AgentLedger:
    """One agent's spending over all its tasks and all runs (for its budget)."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.spent = Spend()
        self.loaded = False
        self._lock = asyncio.Lock()

    async def load(self, store: Store) -> None:
        """Add up what the store holds, once. Called before the agent's first step in
        this process, so no step of this run is counted twice."""
        if self.loaded:
            return
        async with self._lock:
            if self.loaded:
                return
            for task in await store.list_tasks(agent=self.agent):
                self.spent.input_tokens += task.input_tokens
                self.spent.output_tokens += task.output_tokens
                self.spent.cost += task.cost
                self.spent.tool_calls += task.tool_calls
                if task.started_at is not None:
                    ended = task.finished_at or task.updated_at
                    self.spent.wall_s += max(0.0, ended - task.started_at)
            self.loaded = True

    def add(self, **step: Any) -> None:
        if self.loaded:  # before loading, the store's sums will include this step
            self.spent.add(**step)


@dataclass(slots=True)
class RunUsage:
    """This process's model calls, in total and per agent."""

    total: Spend = field(default_factory=Spend)
    by_agent: dict[str, Spend] = field(default_factory=dict)

    def add(self, agent: str, **step: Any) -> None:
        self.total.add(**step)
        self.by_agent.setdefault(agent, Spend()).add(**step)

    def as_dict(self) -> dict[str, Any]:
        return {**self.total.as_dict(),
                "agents": {name: spend.as_dict() for name, spend in self.by_agent.items()}}
