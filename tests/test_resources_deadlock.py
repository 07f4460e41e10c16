"""Deadlocks: a cycle of waits is detected when it forms and broken at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from resources_support import call, context, events, ok, open_runtime
from wakeful.core.states import TaskState
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.project.definitions import AgentDefinition


def crossing_script(first: str, second: str) -> list[dict[str, object]]:
    return [
        {"say": f"locking {first}", "tool_calls": [{"tool": "acquire_lock", "args": {
            "resource": first, "lease_s": 60}}]},
        {"say": f"now {second} too", "latency_ms": 400, "tool_calls": [
            {"tool": "acquire_lock", "args": {"resource": second, "lease_s": 60, "wait_s": 20}}]},
        {"say": "{last_tool_result}", "tool_calls": [
            {"tool": "release_lock", "args": {"resource": first}}]},
        {"say": "{last_tool_result}"},
    ]


async def test_two_agents_deadlock_is_detected_broken_and_reported(tmp_path: Path) -> None:
    models = ModelRegistry(tmp_path)
    models.register("scripted:x", ScriptedModel.from_steps(crossing_script("file:a", "file:b")))
    models.register("scripted:y", ScriptedModel.from_steps(crossing_script("file:b", "file:a")))
    models.register("scripted:monitor", ScriptedModel(ScriptFile.model_validate({"scripts": [
        {"steps": [{"say": "checking", "tool_calls": [{"tool": "list_locks"}]},
                   {"say": "report: {last_tool_result}"}]}]})))
    lock_tools = ["acquire_lock", "release_lock", "list_locks"]
    agents = [AgentDefinition(name=n, model=f"scripted:{n}", tools=lock_tools)
              for n in ("x", "y", "monitor")]
    async with open_runtime(tmp_path, agents=agents, models=models) as runtime:
        older = await runtime.create_task("x", "take a then b")
        await asyncio.sleep(0.05)
        younger = await runtime.create_task("y", "take b then a")
        done_x = await runtime.wait_task(older.id, timeout=30)
        done_y = await runtime.wait_task(younger.id, timeout=30)
        assert done_x.state is TaskState.DONE and done_y.state is TaskState.DONE
        messages = await runtime.store.load_messages(younger.id)
        refusal = next(m["content"] for m in messages if m["role"] == "tool"
                       and "deadlock" in (m["content"] or ""))
        assert refusal.startswith(
            f"error: tool 'acquire_lock': deadlock: task {younger.id} (agent y) waits for "
            f"file:a held by task {older.id} (agent x) with a write lock (token 1), which "
            f"waits for file:b held by task {younger.id} (agent y) with a write lock (token 2)")
        assert "its lock on file:b (token 2) was released" in refusal
        # the older task got its second lock, after the victim's was taken away
        x_results = [m["content"] for m in await runtime.store.load_messages(older.id)
                     if m["role"] == "tool"]
        assert '"acquired": true' in x_results[1] and '"token": 3' in x_results[1]
        # the monitor sees it
        report = await runtime.create_task("monitor", "check on the team")
        result = (await runtime.wait_task(report.id, timeout=10)).result or ""
        assert "recent_deadlocks" in result and f"task {younger.id} (agent y) waits" in result
        await runtime.store.flush()
    [event] = events(tmp_path / "wakeful.db", "resource.deadlock")
    assert event["victim"] == younger.id and event["task_id"] == younger.id
    assert {c["task_id"] for c in event["cycle"]} == {older.id, younger.id}
    released = events(tmp_path / "wakeful.db", "resource.lock_released")
    assert {"task_id": younger.id, "reason": "deadlock"}.items() <= released[0].items()


async def test_three_tasks_in_a_ring(tmp_path: Path) -> None:
    async with open_runtime(tmp_path) as runtime:
        t1, t2, t3 = (context(runtime, f"t_{i}", f"agent{i}") for i in (1, 2, 3))
        for ctx, name in ((t1, "custom:a"), (t2, "custom:b"), (t3, "custom:c")):
            assert (await ok(runtime, ctx, "acquire_lock", resource=name))["acquired"]
        w1 = asyncio.create_task(call(runtime, t1, "acquire_lock", resource="custom:b", wait_s=20))
        w2 = asyncio.create_task(call(runtime, t2, "acquire_lock", resource="custom:c", wait_s=20))
        await asyncio.sleep(0.2)
        assert not w1.done() and not w2.done()  # a chain, not yet a cycle
        closing = await call(runtime, t3, "acquire_lock", resource="custom:a", wait_s=20)
        assert not closing.ok  # refused as a deadlock (below), not after its 20 s wait
        assert ("deadlock: task t_3 (agent agent3) waits for custom:a held by task t_1 "
                "(agent agent1) with a write lock (token 1), which waits for custom:b held by "
                "task t_2 (agent agent2) with a write lock (token 2), which waits for custom:c "
                "held by task t_3 (agent agent3) with a write lock (token 3)") in closing.content
        got2 = await asyncio.wait_for(w2, 5)  # t3's lock on c was released: t2 goes on
        assert '"acquired": true' in got2.content
        assert not w1.done()
        await ok(runtime, t2, "release_lock", resource="custom:b")
        got1 = await asyncio.wait_for(w1, 5)
        assert '"acquired": true' in got1.content
        assert len(runtime.resources.deadlocks) == 1


async def test_a_lock_and_an_auto_pause_write_can_deadlock_too(tmp_path: Path) -> None:
    async with open_runtime(tmp_path, auto_pause_timeout_s=20) as runtime:
        t1, t2 = context(runtime, "t_1", "one"), context(runtime, "t_2", "two")
        await ok(runtime, t1, "acquire_lock", resource="file:a.md")
        await ok(runtime, t2, "acquire_lock", resource="file:b.md")
        first = asyncio.create_task(call(runtime, t1, "write_file", path="b.md", content="1"))
        await asyncio.sleep(0.2)
        second = await call(runtime, t2, "write_file", path="a.md", content="2")
        assert not second.ok and "deadlock: task t_2 (agent two) waits for file:a.md" in (
            second.content)
        assert (await asyncio.wait_for(first, 5)).ok
        assert (tmp_path / "workspace" / "b.md").read_text() == "1"
        assert not (tmp_path / "workspace" / "a.md").exists()
        # the victim's lock went away; it cannot write with its old token any more
        late = await call(runtime, t2, "write_file", path="b.md", content="late")
        assert not late.ok and "is stale" in late.content
