"""Helpers for the people-in-the-loop tests: a runtime built from objects (as the Python
API builds one) on a real SQLite file in a temporary project folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from polling import until
from wakeful.core.approvals import Approval
from wakeful.models.base import Model
from wakeful.models.scripted import ScriptedModel
from wakeful.project.definitions import ProjectConfig
from wakeful.runtime.build import build_runtime
from wakeful.runtime.runtime import Runtime
from wakeful.schedule.clock import Clock

Make = Callable[..., Any]


def steps(*items: dict[str, Any]) -> ScriptedModel:
    return ScriptedModel.from_steps(list(items))


def call(tool: str, say: str = "calling", **args: Any) -> dict[str, Any]:
    return {"say": say, "tool_calls": [{"tool": tool, "args": args}]}


@pytest.fixture
async def people_runtime(tmp_path: Path) -> AsyncIterator[Make]:
    """``await people_runtime(agents, models, clock=...)``: a started runtime; all are
    stopped at teardown."""
    made: list[Runtime] = []

    async def make(agents: Iterable[Mapping[str, Any]], models: Mapping[str, Model],
                   *, clock: Clock | None = None, start: bool = True,
                   poll_interval_s: float = 0.05, db: str = "wakeful.db") -> Runtime:
        runtime = build_runtime(agents=agents, models=models, store=tmp_path / db,
                                config=ProjectConfig(poll_interval_s=poll_interval_s),
                                root=tmp_path, clock=clock)
        made.append(runtime)
        if start:
            await runtime.start()
        return runtime

    yield make
    for runtime in reversed(made):
        await runtime.stop()


async def pending_approval(runtime: Runtime, task_id: str, within: float = 10.0
                           ) -> Approval:
    """The approval the task waits for, once the task waits for it."""
    found: list[Approval] = []

    async def asked() -> bool:
        found[:] = await runtime.approvals.pending(task_id=task_id)
        record = await runtime.get_task(task_id)
        return bool(found) and record.state.value == "waiting"

    await until(asked, within, f"task {task_id} to wait for an approval")
    return found[0]
