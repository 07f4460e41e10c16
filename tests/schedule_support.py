"""Helpers for the sleep-and-wake tests: real runtimes on real SQLite, a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polling import until
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState
from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.runtime.runtime import Runtime

Factory = Callable[..., Any]  # the make_runtime fixture (it takes clock=...)

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z, a Tuesday


def steps(*items: dict[str, Any], latency_ms: float = 0) -> ScriptedModel:
    return ScriptedModel.from_steps(list(items), latency_ms=latency_ms)


def matching(scripts: dict[str, list[dict[str, Any]]], latency_ms: float = 0,
             fallback: list[dict[str, Any]] | None = None) -> ScriptedModel:
    """A model with one script per instruction pattern, and ``fallback`` (default: a
    plain reply) for the rest."""
    return ScriptedModel(ScriptFile.model_validate({"latency_ms": latency_ms, "scripts": [
        *({"match": pattern, "steps": items} for pattern, items in scripts.items()),
        {"steps": fallback or [{"say": "done: {instruction}"}]}]}))


def call(tool: str, say: str = "calling", **args: Any) -> dict[str, Any]:
    """One scripted step that calls ``tool`` with ``args``."""
    return {"say": say, "tool_calls": [{"tool": tool, "args": args}]}


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
