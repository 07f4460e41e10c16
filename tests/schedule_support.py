"""Helpers for the sleep-and-wake tests: real runtimes on real SQLite, a fake clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from wakeful.models.base import Model
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.project.definitions import AgentDefinition
from wakeful.runtime.runtime import Runtime
from wakeful.runtime.states import TaskState
from wakeful.schedule.clock import Clock, FakeClock
from wakeful.store.records import TaskRecord
from wakeful.store.sqlite import SQLiteStore
from wakeful.tools.builtin import default_tools
from wakeful.tools.registry import Tool

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z, a Tuesday

Factory = Callable[..., Any]


def steps(*items: dict[str, Any], latency_ms: float = 0) -> ScriptedModel:
    return ScriptedModel.from_steps(list(items), latency_ms=latency_ms)


def matching(scripts: dict[str, list[dict[str, Any]]], latency_ms: float = 0
             ) -> ScriptedModel:
    """A model with one script per instruction pattern, and a plain reply for the rest."""
    return ScriptedModel(ScriptFile.model_validate({"latency_ms": latency_ms, "scripts": [
        *({"match": pattern, "steps": items} for pattern, items in scripts.items()),
        {"steps": [{"say": "done: {instruction}"}]}]}))


def call(tool: str, say: str = "calling", **args: Any) -> dict[str, Any]:
    """One scripted step that calls ``tool`` with ``args``."""
    return {"say": say, "tool_calls": [{"tool": tool, "args": args}]}


@pytest.fixture
async def runtime_factory(tmp_path: Path) -> AsyncIterator[Factory]:
    """``await make(agents, models, clock=..., db=..., start=True, tools=())``; every
    runtime made is stopped at teardown."""
    made: list[Runtime] = []

    async def make(agents: Iterable[AgentDefinition], models: Mapping[str, Model],
                   *, clock: Clock | None = None, db: Path | None = None, start: bool = True,
                   tools: Iterable[Tool] = (), poll_interval_s: float = 0.05) -> Runtime:
        registry = ModelRegistry(tmp_path / "scripts")
        for spec, model in models.items():
            registry.register(spec, model)
        registry_tools = default_tools()
        for extra in tools:
            registry_tools.register(extra)
        runtime = Runtime(store=SQLiteStore(db or tmp_path / "wakeful.db"), models=registry,
                          tools=registry_tools, agents=list(agents),
                          poll_interval_s=poll_interval_s, clock=clock or FakeClock(START))
        made.append(runtime)
        if start:
            await runtime.start()
        return runtime

    yield make
    for runtime in reversed(made):
        await runtime.stop()


async def until(predicate: Callable[[], Any], within: float = 10.0, what: str = "it") -> None:
    """Poll an (async or sync) predicate on the real clock."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.005)


async def waiting(runtime: Runtime, task_id: str, within: float = 10.0) -> None:
    """Until the task sits in a sleep or wait (``runtime.waits`` knows it)."""
    await until(lambda: runtime.waits.waiting(task_id) is not None, within,
                f"task {task_id} to wait")


async def tasks_of(runtime: Runtime, agent: str | None = None) -> list[TaskRecord]:
    return await runtime.store.list_tasks(agent=agent)


async def finished(runtime: Runtime, task_id: str, within: float = 10.0) -> TaskRecord:
    record = await runtime.wait_task(task_id, timeout=within)
    assert record.state in (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED)
    return record
