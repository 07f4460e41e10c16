"""A worker cut off from PostgreSQL (its connections killed, new ones refused) stops
its agents' loops once its lease has lapsed, and says so; when the database is back it
writes again and takes agents again, and the work it was doing finishes once."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from polling import until
from wakeful.core.states import TaskState
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel
from wakeful.project.definitions import AgentDefinition
from wakeful.runtime.runtime import Runtime
from wakeful.store import open_store


async def _admin(url: str, *statements: str) -> None:
    server = url.rsplit("/", 1)[0]
    conn = await asyncpg.connect(f"{server}/postgres")
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def test_a_worker_cut_off_from_the_database_stops_its_agents(
        tmp_path: Path, pg_url: str) -> None:
    database = pg_url.rsplit("/", 1)[1].split("?")[0]
    models = ModelRegistry(tmp_path / "scripts")
    models.register("m", ScriptedModel.from_steps([
        {"say": "a while", "tool_calls": [{"tool": "sleep_for", "args": {"seconds": 3}}]},
        {"say": "done"}]))
    runtime = Runtime(store=open_store(pg_url), models=models, lease_s=1.0,
                      agents=[AgentDefinition(name="a", model="m", tools=["sleep_for"])])
    await runtime.start()
    try:
        task = await runtime.create_task("a", "work")
        await until(lambda: runtime.agent("a").running_tasks, what="the task running")
        await _admin(pg_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false',
                     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                     f"datname = '{database}' AND application_name LIKE 'wakeful%'")
        try:
            # (its loops are cancelled; their last writes wait for the database)
            await until(lambda: not runtime.owns_agent("a"), within=30,
                        what="the cut-off worker to give up its agents")
        finally:
            await _admin(pg_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        done = await runtime.wait_task(task.id, timeout=60)
        assert done.state is TaskState.DONE and done.result == "done"
        await runtime.store.flush()

        async def said_so() -> bool:
            found = await runtime.store.query_events(types=["agent.lease_lost"])
            return bool(found)

        await until(said_so, what="agent.lease_lost in the log")
        messages = await runtime.store.load_messages(task.id)
        assert [m["content"] for m in messages if m["role"] == "assistant"] == [
            "a while", "done"]
    finally:
        await runtime.stop()


pytestmark = pytest.mark.slow
