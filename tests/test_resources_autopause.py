"""Auto-pause: short operations on a busy resource wait their turn, by themselves."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from resources_support import call, context, events, ok, open_runtime
from wakeful.core.states import AgentState, TaskState
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.project.definitions import AgentDefinition
from wakeful.resources import Access
from wakeful.toolkit.registry import ToolOutcome, tool


async def test_fifty_tasks_appending_to_one_file_lose_no_line(tmp_path: Path) -> None:
    """50 real tasks, run at once by one agent, each append a line through append_file."""
    models = ModelRegistry(tmp_path)
    models.register("scripted:appender", ScriptedModel.from_steps([
        {"say": "appending", "tool_calls": [
            {"tool": "append_file", "args": {"path": "log/lines.txt", "text": "{instruction}"}},
            {"tool": "edit_file", "args": {"path": "counter.txt", "old": "[", "new": "[x"}}]},
        {"say": "done"},
    ]))
    writer = AgentDefinition(name="writer", model="scripted:appender", max_concurrent_tasks=50,
                             tools=["append_file", "edit_file"])
    async with open_runtime(tmp_path, agents=[writer], models=models) as runtime:
        (tmp_path / "workspace" / "counter.txt").write_text("[]")
        for i in range(50):
            await runtime.create_task("writer", f"line {i:02d}")
        await runtime.wait_idle(timeout=60)
        records = await runtime.store.list_tasks()
        assert [r.state for r in records] == [TaskState.DONE] * 50
        await runtime.store.flush()
    # they really did collide, and waited for each other
    waits = events(tmp_path / "wakeful.db", "resource.wait")
    assert waits and len(events(tmp_path / "wakeful.db", "resource.granted")) == len(waits)
    lines = (tmp_path / "workspace" / "log" / "lines.txt").read_text().splitlines()
    assert sorted(lines) == [f"line {i:02d}" for i in range(50)]
    # edit_file is a read-modify-write: every one of the 50 edits is in the file
    assert (tmp_path / "workspace" / "counter.txt").read_text() == "[" + "x" * 50 + "]"


def counter_tools(shared: dict[str, int]) -> tuple[Any, Any]:
    """A read-modify-write with a pause in the middle, declared and undeclared."""

    async def bump_body() -> int:
        value = shared["n"]
        await asyncio.sleep(0.002)
        shared["n"] = value + 1
        return value + 1

    @tool(name="bump", resources=lambda a: [Access.write("custom:counter")])
    async def bump() -> int:
        """Add one to the shared counter."""
        return await bump_body()

    @tool(name="bump_unguarded")
    async def bump_unguarded() -> int:
        """Add one to the shared counter, declaring nothing."""
        return await bump_body()

    return bump, bump_unguarded


async def test_declared_read_modify_write_loses_no_update(tmp_path: Path) -> None:
    shared = {"n": 0}
    bump, unguarded = counter_tools(shared)
    async with open_runtime(tmp_path, extra_tools=[bump, unguarded]) as runtime:
        outcomes = await asyncio.gather(*(call(runtime, context(runtime, f"t_{i:02d}"), "bump")
                                          for i in range(50)))
        assert all(o.ok for o in outcomes)
        assert shared["n"] == 50
        # The same body without a declaration loses updates: the test above could fail.
        shared["n"] = 0
        await asyncio.gather(*(call(runtime, context(runtime, f"t_{i:02d}"), "bump_unguarded")
                               for i in range(50)))
        assert shared["n"] < 50


class Probe:
    """Records who is inside a resource, to observe sharing and order."""

    def __init__(self) -> None:
        self.inside: set[str] = set()
        self.max_readers = 0
        self.entered: list[str] = []
        self.overlaps: list[tuple[str, frozenset[str]]] = []
        self.release = asyncio.Event()
        self.arrived: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def tools(self) -> list[Any]:
        probe = self

        async def body(name: str, hold: float) -> str:
            probe.entered.append(name)
            probe.overlaps.append((name, frozenset(probe.inside)))
            probe.inside.add(name)
            probe.arrived[name].set()
            probe.max_readers = max(probe.max_readers, len(probe.inside))
            try:
                if hold < 0:
                    await probe.release.wait()
                else:
                    await asyncio.sleep(hold)
            finally:
                probe.inside.discard(name)
            return name

        @tool(name="slow_read", resources=lambda a: [Access.read("custom:doc")])
        async def slow_read(name: str, hold: float) -> str:
            """Read the document slowly."""
            return await body(name, hold)

        @tool(name="slow_write", resources=lambda a: [Access.write("custom:doc")])
        async def slow_write(name: str, hold: float) -> str:
            """Write the document slowly."""
            return await body(name, hold)

        return [slow_read, slow_write]


async def test_readers_share_and_a_writer_excludes(tmp_path: Path) -> None:
    probe = Probe()
    async with open_runtime(tmp_path, extra_tools=probe.tools()) as runtime:
        await asyncio.gather(*(call(runtime, context(runtime, f"t_r{i}"), "slow_read",
                                    name=f"r{i}", hold=0.3) for i in range(4)))
        assert probe.max_readers == 4  # all four inside at once: shared, not in turn
        probe.overlaps.clear()
        await asyncio.gather(
            call(runtime, context(runtime, "t_w1"), "slow_write", name="w1", hold=0.1),
            call(runtime, context(runtime, "t_r5"), "slow_read", name="r5", hold=0.1),
            call(runtime, context(runtime, "t_w2"), "slow_write", name="w2", hold=0.1))
        for name, others in probe.overlaps:
            assert not others, f"{name} ran while {sorted(others)} were inside"


async def wait_for_line(runtime: Any, length: int) -> None:
    deadline = time.monotonic() + 10
    while len(runtime.resources.gate.waiters()) < length:
        assert time.monotonic() < deadline, "the line never grew"
        await asyncio.sleep(0.005)


async def test_first_come_first_served_and_no_barging(tmp_path: Path) -> None:
    probe = Probe()
    async with open_runtime(tmp_path, extra_tools=probe.tools()) as runtime:
        holder = asyncio.create_task(call(runtime, context(runtime, "t_0"), "slow_write",
                                          name="holder", hold=-1))
        await asyncio.wait_for(probe.arrived["holder"].wait(), 10)
        arrivals = [("w1", "slow_write"), ("r2", "slow_read"), ("r3", "slow_read"),
                    ("w4", "slow_write"), ("r5", "slow_read")]
        calls = []
        for n, (name, tool_name) in enumerate(arrivals, start=1):
            calls.append(asyncio.create_task(call(runtime, context(runtime, f"t_{name}"),
                                                  tool_name, name=name, hold=0.15)))
            await wait_for_line(runtime, n)
        probe.release.set()
        await asyncio.gather(holder, *calls)
    assert probe.entered == ["holder", "w1", "r2", "r3", "w4", "r5"]
    overlaps = dict(probe.overlaps)
    assert overlaps["r3"] == {"r2"}  # the two readers shared...
    assert overlaps["w4"] == frozenset() and overlaps["r5"] == frozenset()  # ...r5 did not jump w4


async def test_a_wait_longer_than_the_bound_is_a_clear_error(tmp_path: Path) -> None:
    async with open_runtime(tmp_path, auto_pause_timeout_s=0.5) as runtime:
        owner, other = context(runtime, "t_1", "keeper"), context(runtime, "t_2", "editor")
        await ok(runtime, owner, "write_file", path="report.md", content="mine")
        await ok(runtime, owner, "acquire_lock", resource="file:report.md", lease_s=30)
        started = time.monotonic()
        outcome = await call(runtime, other, "write_file", path="report.md", content="theirs")
        waited = time.monotonic() - started
        assert not outcome.ok
        assert waited > 0.45  # it waited out its bound (no upper bound: a busy machine)
        assert "auto-pause: task t_2 (agent editor) waited 0.5 s to write file:report.md" in (
            outcome.content)
        assert "held by task t_1 (agent keeper) with a write lock (token 1)" in outcome.content
        assert (tmp_path / "workspace" / "report.md").read_text() == "mine"
        # the runtime is fine: once released, the same call goes through
        await ok(runtime, owner, "release_lock", resource="file:report.md")
        await ok(runtime, other, "write_file", path="report.md", content="theirs")
        await runtime.store.flush()
    [timeout] = events(tmp_path / "wakeful.db", "resource.timeout")
    assert timeout["resource"] == "file:report.md" and timeout["task_id"] == "t_2"
    assert not runtime.resources.gate.holders() and not runtime.resources.gate.waiters()


async def test_a_waiting_task_shows_paused_on_the_resource_not_its_agent(tmp_path: Path) -> None:
    models = ModelRegistry(tmp_path)
    models.register("scripted:team", ScriptedModel(ScriptFile.model_validate({"scripts": [
        {"match": "hold", "steps": [
            {"say": "locking", "tool_calls": [{"tool": "acquire_lock", "args": {
                "resource": "kv:plan", "lease_s": 30}}]},
            {"say": "working a long time", "latency_ms": 1500, "tool_calls": [
                {"tool": "release_lock", "args": {"resource": "kv:plan"}}]},
            {"say": "released"}]},
        {"match": "set", "steps": [
            {"say": "setting", "tool_calls": [{"tool": "kv_set", "args": {
                "key": "plan", "value": "v2"}}]},
            {"say": "set"}]},
    ]})))
    agent = AgentDefinition(name="planner", model="scripted:team", max_concurrent_tasks=2,
                            tools=["acquire_lock", "release_lock", "kv_set"])
    async with open_runtime(tmp_path, agents=[agent], models=models) as runtime:
        holder = await runtime.create_task("planner", "hold the plan")
        deadline = time.monotonic() + 10
        while not (await runtime.resources.view()).locks:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        setter = await runtime.create_task("planner", "set the plan")
        found = None
        while found is None or found[0].record.state is not TaskState.WAITING:
            assert time.monotonic() < deadline, "the setter never waited"
            await asyncio.sleep(0.01)
            found = runtime.agent("planner").task_loop(setter.id)
        assert found[0].waiting_on == "auto-pause: kv:plan"
        assert runtime.agent("planner").state is AgentState.RUNNING
        [status] = runtime.statuses()
        assert status.state is AgentState.RUNNING and status.running == 2
        view = await runtime.resources.view()
        assert [(w.resource, w.kind, w.owner.task_id) for w in view.waiters] == [
            ("kv:plan", "auto-pause", setter.id)]
        done = await runtime.wait_task(setter.id, timeout=20)
        assert done.state is TaskState.DONE
        assert (await runtime.wait_task(holder.id, timeout=20)).state is TaskState.DONE
        entry = await runtime.resources.store.kv_get("plan")
        assert entry is not None and entry.value == "v2"
        await runtime.store.flush()
    db = tmp_path / "wakeful.db"
    [wait] = events(db, "resource.wait")
    assert wait["task_id"] == setter.id and wait["kind"] == "auto-pause"
    assert f"held by task {holder.id} (agent planner)" in wait["blocked_by"][0]
    [granted] = events(db, "resource.granted")
    assert granted["waited_ms"] > 500
    reasons = [e.get("reason") for e in events(db, "task.state") if e["task_id"] == setter.id]
    assert "auto-pause: kv:plan" in reasons
    # The agent itself never paused: it ran until the runtime stopped it at the end.
    assert [e["to"] for e in events(db, "agent.state")] == ["running", "stopped"]


async def test_a_cancelled_waiter_leaves_the_line(tmp_path: Path) -> None:
    probe = Probe()
    async with open_runtime(tmp_path, extra_tools=probe.tools()) as runtime:
        holder = asyncio.create_task(call(runtime, context(runtime, "t_0"), "slow_write",
                                          name="holder", hold=-1))
        await asyncio.wait_for(probe.arrived["holder"].wait(), 10)
        doomed = asyncio.create_task(call(runtime, context(runtime, "t_1"), "slow_write",
                                          name="doomed", hold=0))
        await wait_for_line(runtime, 1)
        later = asyncio.create_task(call(runtime, context(runtime, "t_2"), "slow_write",
                                         name="later", hold=0))
        await wait_for_line(runtime, 2)
        doomed.cancel()
        results: list[Any] = await asyncio.gather(doomed, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert len(runtime.resources.gate.waiters()) == 1
        probe.release.set()
        outcome: ToolOutcome = await later
        assert outcome.ok and await holder
        assert probe.entered == ["holder", "later"]
        assert not runtime.resources.gate.waiters() and not runtime.resources.gate.holders()
        await asyncio.sleep(0)
        assert (await runtime.resources.view()).waiters == []
