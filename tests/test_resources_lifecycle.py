"""Shutdown with tasks waiting for resources, and order across runtimes sharing a store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from resources_support import call, context, ok, open_runtime, query
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.project.definitions import AgentDefinition


async def test_stopping_the_runtime_while_tasks_wait_leaves_nothing_behind(
        tmp_path: Path) -> None:
    models = ModelRegistry(tmp_path)
    models.register("scripted:team", ScriptedModel(ScriptFile.model_validate({"scripts": [
        {"match": "hold", "steps": [
            {"say": "locking", "tool_calls": [{"tool": "acquire_lock", "args": {
                "resource": "kv:plan", "lease_s": 60}}]},
            {"say": "a long time", "latency_ms": 60_000}]},
        {"match": "set", "steps": [
            {"say": "setting", "tool_calls": [{"tool": "kv_set", "args": {
                "key": "plan", "value": 1}}]}]},
        {"match": "lock", "steps": [
            {"say": "waiting", "tool_calls": [{"tool": "acquire_lock", "args": {
                "resource": "kv:plan", "wait_s": 60}}]}]},
    ]})))
    agent = AgentDefinition(name="team", model="scripted:team", max_concurrent_tasks=3,
                            tools=["acquire_lock", "kv_set"])
    db = tmp_path / "wakeful.db"
    async with open_runtime(tmp_path, agents=[agent], models=models,
                            auto_pause_timeout_s=60) as runtime:
        await runtime.create_task("team", "hold the plan")
        deadline = time.monotonic() + 10
        while not (await runtime.resources.view()).locks:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await runtime.create_task("team", "set the plan")
        await runtime.create_task("team", "lock the plan")
        while len((await runtime.resources.view()).waiters) < 2:
            assert time.monotonic() < deadline, "the two waits never showed"
            await asyncio.sleep(0.02)
        await asyncio.wait_for(runtime.stop(), 60)  # the waits end at once, not at 60 s
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []
    # interrupted, so they resume on the next run; the lock outlives the process
    assert query(db, "SELECT state FROM tasks") == [("queued",)] * 3
    assert query(db, "SELECT COUNT(*) FROM resource_waiters") == [(0,)]
    assert query(db, "SELECT resource FROM resource_locks") == [("kv:plan",)]
    assert not runtime.resources.gate.holders() and not runtime.resources.gate.waiters()


async def test_runtimes_sharing_a_store_take_turns_in_arrival_order(tmp_path: Path) -> None:
    async with open_runtime(tmp_path, poll_interval_s=0.05) as here, \
            open_runtime(tmp_path, poll_interval_s=0.05) as there:
        holder = context(here, "t_1", "holder")
        await ok(here, holder, "acquire_lock", resource="kv:plan")
        # a task of the other runtime comes first, and waits on the store...
        remote = asyncio.create_task(call(there, context(there, "t_2", "remote"), "kv_set",
                                          key="plan", value="remote"))
        deadline = time.monotonic() + 10
        while not (await here.resources.view()).waiters:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        # ...then a task of this runtime, which waits in this runtime's line
        local = asyncio.create_task(call(here, context(here, "t_3", "local"), "kv_set",
                                         key="plan", value="local"))
        while len((await here.resources.view()).waiters) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await ok(here, holder, "release_lock", resource="kv:plan")
        first, second = await asyncio.wait_for(asyncio.gather(remote, local), 10)
        assert first.ok and second.ok
        assert '"version": 1' in first.content  # the remote task, first in line, went first
        assert '"version": 2' in second.content
        entry = await here.resources.store.kv_get("plan")
        assert entry is not None and entry.value == "local" and entry.updated_by == "local/t_3"
