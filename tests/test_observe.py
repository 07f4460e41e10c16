"""Causal links between tasks, and the inspector's answers (trace, inspect, why)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from typer.testing import CliRunner

from wakeful.cli import app
from wakeful.core.records import Event
from wakeful.core.states import AgentState, TaskState
from wakeful.observe.inspect import causal_tree, why_agent
from wakeful.project.definitions import AgentDefinition
from wakeful.store.sqlite import SQLiteStore
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import tool

if TYPE_CHECKING:
    from conftest import AgentFactory, EventQuery, RuntimeFactory, ScriptFactory, WaitUntil


@tool
async def hand_off(ctx: ToolContext, agent: str, instruction: str) -> str:
    """Start a task on another agent (a stand-in for delegation)."""
    record = await ctx.runtime.create_task(agent, instruction, created_by=ctx.agent)
    return record.id


def chain_agents(agent_def: AgentFactory) -> list[AgentDefinition]:
    return [agent_def("a", model="first", tools=["hand_off"]),
            agent_def("b", model="second", tools=["hand_off"]),
            agent_def("c", model="last")]


async def test_delegation_chain_links_tasks_and_events_across_three_agents(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery, wait_until: WaitUntil,
) -> None:
    models = {
        "first": script([{"tool_calls": [{"tool": "hand_off",
                                          "args": {"agent": "b", "instruction": "part B"}}]},
                         {"say": "a done"}]),
        "second": script([{"tool_calls": [{"tool": "hand_off",
                                           "args": {"agent": "c", "instruction": "part C"}}]},
                          {"say": "b done"}]),
        "last": script([{"say": "c done"}]),
    }
    rt = await make_runtime(chain_agents(agent_def), models, tools=[hand_off])
    root = await rt.create_task("a", "the whole job")
    await rt.wait_idle(5)

    tasks = {t.agent: t for t in await rt.store.list_tasks()}
    assert set(tasks) == {"a", "b", "c"}
    assert tasks["a"].parent_id is None and tasks["a"].trace_id == root.id
    assert tasks["b"].parent_id == root.id and tasks["b"].cause_id == root.id
    assert tasks["c"].parent_id == tasks["b"].id
    assert {t.trace_id for t in tasks.values()} == {root.id}
    assert tasks["c"].created_by == "b"

    # Every event the three tasks recorded carries the root's trace.
    traced = await events(rt, correlation_id=root.id)
    assert {e.task_id for e in traced} == {t.id for t in tasks.values()}
    created_c = [e for e in traced if e.type == "task.created" and e.task_id == tasks["c"].id]
    assert created_c[0].causation_id == tasks["b"].id

    tree = await causal_tree(rt.store, root.id)
    assert tree.task.id == root.id
    assert [n.task.agent for n in tree.children] == ["b"]
    assert [n.task.agent for n in tree.children[0].children] == ["c"]


async def test_independent_tasks_have_separate_traces(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime([agent_def("w")], {"m": script([{"say": "ok"}])})
    one = await rt.create_task("w", "one")
    two = await rt.create_task("w", "two")
    await rt.wait_idle(5)
    assert one.trace_id == one.id and two.trace_id == two.id
    assert (await rt.get_task(two.id)).parent_id is None


async def test_causal_tree_shows_where_it_failed(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    models = {"first": script([{"tool_calls": [{"tool": "hand_off",
                                                "args": {"agent": "c", "instruction": "x"}}]},
                               {"say": "a done"}]),
              "last": script([{"error": "provider down"}])}
    agents = [agent_def("a", model="first", tools=["hand_off"]),
              agent_def("c", model="last", policy="never")]
    rt = await make_runtime(agents, models, tools=[hand_off])
    root = await rt.create_task("a", "job")
    await rt.wait_idle(5)
    tree = await causal_tree(rt.store, root.id)
    child = tree.children[0]
    assert child.task.state is TaskState.FAILED and child.task.error_kind == "model"
    assert [e.type for e in child.events] == ["model.error", "task.failed"]
    assert "provider down" in child.events[-1].data["error"]


async def test_why_explains_each_kind_of_blocked_task(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil,
) -> None:
    # Enough steps that the pause below always lands before the first task could end.
    slow = script([{"say": "step", "tool_calls": [{"tool": "note", "args": {"text": f"n{i}"}}]}
                   for i in range(6)] + [{"say": "done"}], latency_ms=300)
    definition = agent_def("w", tools=["note"], max_concurrent_tasks=1)
    rt = await make_runtime([definition], {"m": slow})
    first = await rt.create_task("w", "first")
    second = await rt.create_task("w", "second")
    async def stored_state(task_id: str) -> TaskState:
        record = await rt.store.get_task(task_id)
        assert record is not None
        return record.state

    async def first_is(state: TaskState) -> bool:
        return await stored_state(first.id) is state

    await wait_until(lambda: first_is(TaskState.RUNNING), what="first task running")

    saved = (await rt.store.load_agents())["w"]
    answer = await why_agent(rt.store, definition, saved)
    assert answer.state is AgentState.RUNNING
    assert [b.task_id for b in answer.blockers] == [second.id]
    assert "no free slot (1/1 tasks running)" in answer.blockers[0].what
    assert answer.running and answer.running[0].startswith(first.id)

    await rt.pause_agent("w")
    await wait_until(lambda: first_is(TaskState.WAITING), what="first task held at the pause")
    answer = await why_agent(rt.store, definition, (await rt.store.load_agents())["w"])
    whats = {b.task_id: b.what for b in answer.blockers}
    assert whats[first.id].startswith("waiting on agent paused")
    assert whats[second.id] == "queued: the agent is paused"
    assert answer.reason == "paused by a person"
    await rt.resume_agent("w")
    await rt.wait_idle(5)
    answer = await why_agent(rt.store, definition, (await rt.store.load_agents())["w"])
    assert answer.blockers == [] and answer.running == []


def test_cli_inspect_why_and_trace(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "team"
    assert runner.invoke(app, ["demo", str(folder)]).exit_code == 0
    result = runner.invoke(app, ["tasks", "-p", str(folder), "--agent", "coordinator"])
    task_id = result.stdout.split("t_", 1)[1].split()[0]
    inspected = runner.invoke(app, ["inspect", f"t_{task_id}", "-p", str(folder)])
    assert inspected.exit_code == 0 and f"t_{task_id}" in inspected.stdout
    assert "coordinator done" in inspected.stdout
    why = runner.invoke(app, ["why", "writer", "-p", str(folder)])
    assert why.exit_code == 0
    assert "writer is stopped (the runtime stopped)" in why.stdout
    assert "the agent is stopped: the runtime stopped" in why.stdout
    traced = runner.invoke(app, ["trace", "-p", str(folder), "--type", "task.state",
                                 "--agent", "writer", "--last", "100"])
    assert traced.exit_code == 0
    lines = [line for line in traced.stdout.splitlines() if line.strip()]
    assert lines and all("writer" in line and "task.state" in line for line in lines)
    assert sum("running → done" in line for line in lines) == 3  # one delegated to it
    unknown = runner.invoke(app, ["why", "ghost", "-p", str(folder)])
    assert unknown.exit_code == 1 and "unknown agent 'ghost'" in unknown.stderr
    missing = runner.invoke(app, ["inspect", "t_nope", "-p", str(folder)])
    assert missing.exit_code == 1 and "unknown task 't_nope'" in missing.stderr


async def test_trace_follow_prints_events_recorded_by_another_process(tmp_path: Path) -> None:
    (tmp_path / "wakeful.yaml").write_text("name: t\n")
    store = SQLiteStore(tmp_path / "wakeful.db")
    await store.open()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wakeful", "trace", "-f", "--interval", "0.05",
        "--type", "custom.", "-p", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})

    async def record() -> None:
        # again and again: `trace -f` follows from the end of the log as it finds it,
        # and on a busy machine the process may take seconds to get there
        while True:
            store.append_event(Event(type="other.thing", agent="x"))
            store.append_event(Event(type="custom.ping", agent="someone", data={"n": 1}))
            await store.flush()
            await asyncio.sleep(0.5)

    recording = asyncio.create_task(record())
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(120):
            while not lines or "custom.ping" not in lines[-1]:
                lines.append((await proc.stdout.readline()).decode())
        assert "someone" in lines[-1] and "n=1" in lines[-1]
        assert not any("other.thing" in line for line in lines)  # --type filters
    finally:
        recording.cancel()
        await asyncio.gather(recording, return_exceptions=True)
        proc.terminate()
        await proc.wait()
        await store.close()


async def test_why_names_the_lock_holder_the_awaited_mail_and_a_spent_budget(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil,
) -> None:
    from wakeful.project.definitions import Budget, BudgetLimits

    holder = script([{"tool_calls": [{"tool": "acquire_lock",
                                      "args": {"resource": "custom:printer", "lease_s": 30}}]},
                     {"say": "printing", "latency_ms": 3000}])
    waiter = script([{"tool_calls": [{"tool": "acquire_lock",
                                      "args": {"resource": "custom:printer", "wait_s": 20}}]},
                     {"say": "my turn"}])
    listener = script([{"tool_calls": [{"tool": "check_mail",
                                        "args": {"sender": "holder", "wait_s": 20}}]},
                       {"say": "got it"}])
    spender = script([{"say": "a long answer " * 20}])
    locks = ["acquire_lock", "release_lock"]
    agents = [agent_def("holder", model="holder", tools=locks),
              agent_def("waiter", model="waiter", tools=locks),
              agent_def("listener", model="listener", tools=["check_mail"]),
              agent_def("spender", model="spender",
                        budget=Budget(agent=BudgetLimits(max_tokens=10)))]
    rt = await make_runtime(agents, {"holder": holder, "waiter": waiter,
                                     "listener": listener, "spender": spender})
    # Until the store has granted the lock, the holder is only "writing" in the gate (no
    # token yet): wait for the grant itself, not the step that asked for it.
    granted = rt.events.subscribe(lambda e: e.type == "resource.lock_acquired")
    held = await rt.create_task("holder", "hold the printer")
    await asyncio.wait_for(granted.get(), 60)
    waiting = await rt.create_task("waiter", "print too")
    await rt.create_task("listener", "wait for the holder's mail")
    await rt.create_task("spender", "talk a lot")
    await rt.create_task("spender", "talk again")

    async def explain(name: str) -> list[str]:
        saved = (await rt.store.load_agents())[name]
        answer = await why_agent(rt.store, rt.agents[name].definition, saved)
        return [b.what for b in answer.blockers]

    async def waiting_on(name: str, text: str) -> bool:
        return any(text in what for what in await explain(name))

    await wait_until(lambda: waiting_on("waiter", "waiting on lock: custom:printer"),
                     what="the waiter blocked on the lock")
    [what] = await explain("waiter")
    assert f"held by task {held.id} (agent holder) with a write lock" in what
    await wait_until(lambda: waiting_on("listener", "waiting on mail from holder"),
                     what="the listener waiting for mail")
    await wait_until(lambda: waiting_on("spender", "its agent budget is exhausted"),
                     what="the spender's budget")
    assert any("max_tokens" in w and "of 10" in w for w in await explain("spender"))
    await rt.cancel_task(waiting.id)


@tool
def explode(text: str) -> str:
    """A tool that always fails."""
    raise RuntimeError(f"boom on {text}")


async def test_one_agents_failing_tool_never_touches_another_agents_tasks(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    failing = script([{"tool_calls": [{"tool": "explode", "args": {"text": f"x{i}"}}]}
                      for i in range(6)], latency_ms=20)
    healthy = script([{"tool_calls": [{"tool": "note", "args": {"text": "fine"}}]},
                      {"say": "healthy done"}], latency_ms=30)
    rt = await make_runtime([agent_def("fragile", model="failing", tools=["explode"],
                                       policy="never"),
                             agent_def("steady", model="healthy", tools=["note"],
                                       max_concurrent_tasks=5)],
                            {"failing": failing, "healthy": healthy}, tools=[explode])
    bad = [await rt.create_task("fragile", f"doomed {i}") for i in range(3)]
    good = [await rt.create_task("steady", f"fine {i}") for i in range(5)]
    await rt.wait_idle(10)
    for task in bad:
        record = await rt.get_task(task.id)
        assert (record.state, record.error_kind) == (TaskState.FAILED, "tool")
    for task in good:
        record = await rt.get_task(task.id)
        assert (record.state, record.result) == (TaskState.DONE, "healthy done")
    assert rt.agents["fragile"].state is AgentState.RUNNING  # a task failed, not the agent
    assert rt.agents["steady"].state is AgentState.RUNNING


async def test_failures_are_classified_by_kind(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery,
) -> None:
    from wakeful.project.definitions import Budget, BudgetLimits

    models = {
        "model": script([{"error": "provider is down"}]),
        "tool": script([{"tool_calls": [{"tool": f"nope{i}"}]} for i in range(5)]),
        "loop": script([{"tool_calls": [{"tool": "note", "args": {"text": "same"}}]}] * 12),
        "steps": script([{"tool_calls": [{"tool": "note", "args": {"text": f"n{i}"}}]}
                         for i in range(5)]),
        "budget": script([{"say": "long words " * 30,
                           "tool_calls": [{"tool": "note", "args": {"text": "spent"}}]},
                          {"say": "never reached"}]),
    }
    agents = [agent_def("model", model="model", policy="never"),
              agent_def("tool", model="tool"),
              agent_def("loop", model="loop", tools=["note"]),
              agent_def("steps", model="steps", tools=["note"], max_steps=2),
              agent_def("budget", model="budget", tools=["note"],
                        budget=Budget(task=BudgetLimits(max_tokens=5)))]
    rt = await make_runtime(agents, models)
    for name in models:
        await rt.create_task(name, f"fail as {name}")
    await rt.wait_idle(10)
    kinds = {t.agent: t.error_kind for t in await rt.store.list_tasks()}
    assert kinds == {"model": "model", "tool": "tool", "loop": "tool_loop",
                     "steps": "step_limit", "budget": "budget"}
    failed = await events(rt, types=["task.failed"])
    assert {e.agent: (e.data["kind"], e.data["retryable"]) for e in failed} == {
        "model": ("model", True), "tool": ("tool", False), "loop": ("tool_loop", False),
        "steps": ("step_limit", False), "budget": ("budget", False)}
