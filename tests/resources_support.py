"""Helpers shared by the resource tests: a real runtime on a real SQLite file (or on the
store given), and tool calls made exactly as a task loop makes them (through
ToolRegistry.call)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from wakeful.models.base import ToolCall
from wakeful.models.registry import ModelRegistry
from wakeful.project.definitions import AgentDefinition, ResourcesConfig
from wakeful.resources import ResourceManager
from wakeful.runtime.runtime import Runtime
from wakeful.store import Store
from wakeful.store.sqlite import SQLiteStore
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import Tool, ToolOutcome


@asynccontextmanager
async def open_runtime(
    root: Path, *, agents: Iterable[AgentDefinition] = (), models: ModelRegistry | None = None,
    extra_tools: Iterable[Tool] = (), store: Store | None = None, **config: Any,
) -> AsyncIterator[Runtime]:
    runtime = Runtime(
        store=store or SQLiteStore(root / "wakeful.db"),
        models=models or ModelRegistry(root / "scripts"),
        agents=agents,
        resources=ResourceManager(root / "workspace", ResourcesConfig(**config)),
    )
    for tool in extra_tools:
        runtime.tools.register(tool)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def context(runtime: Runtime, task_id: str, agent: str = "agent") -> ToolContext:
    return ToolContext(agent=agent, task_id=task_id, runtime=runtime)


async def call(runtime: Runtime, ctx: ToolContext, name: str, /, **args: Any) -> ToolOutcome:
    allowed = frozenset(runtime.tools.names())
    return await runtime.tools.call(ctx, allowed, ToolCall(id="call", name=name,
                                                           arguments=json.dumps(args)))


async def ok(runtime: Runtime, ctx: ToolContext, name: str, /, **args: Any) -> Any:
    outcome = await call(runtime, ctx, name, **args)
    assert outcome.ok, outcome.content
    try:
        return json.loads(outcome.content)
    except json.JSONDecodeError:
        return outcome.content


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def events(db: Path, type_: str) -> list[dict[str, Any]]:
    return [{"task_id": t, "agent": a, **json.loads(d)} for t, a, d in query(
        db, "SELECT task_id, agent, data FROM events WHERE type = ? ORDER BY id", (type_,))]
