"""The runtime: parallel agents, isolation, restart policies, lifecycle, clean shutdown."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from wakeful.core.records import TaskRecord
from wakeful.core.states import AgentState, TaskState
from wakeful.errors import ModelError, UnknownAgentError, UnknownTaskError, WakefulError
from wakeful.models.base import Message, StreamEvent, ToolSpec
from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.runtime.agent import AgentRunner
from wakeful.runtime.runtime import Runtime
from wakeful.toolkit.registry import Tool, make_tool

if TYPE_CHECKING:
    from conftest import AgentFactory, EventQuery, RuntimeFactory, ScriptFactory, WaitUntil

DONE, FAILED, QUEUED = TaskState.DONE, TaskState.FAILED, TaskState.QUEUED


def scripts(*entries: dict[str, Any], latency_ms: float = 0) -> ScriptedModel:
    """A scripted model with several scripts chosen by regex on the instruction."""
    return ScriptedModel(ScriptFile.model_validate({"latency_ms": latency_ms,
                                                    "scripts": list(entries)}))


def note_steps(count: int, latency_ms: float | None = None) -> list[dict[str, Any]]:
    """``count`` steps that each write a note, then a final answer."""
    step: dict[str, Any] = {"say": "step {step}",
                            "tool_calls": [{"tool": "note", "args": {"text": "n{step}"}}]}
    if latency_ms is not None:
        step["latency_ms"] = latency_ms
    return [dict(step) for _ in range(count)] + [{"say": "finished {instruction}"}]


async def step_of(rt: Runtime, task_id: str) -> int:
    return (await rt.get_task(task_id)).step


async def state_of(rt: Runtime, task_id: str) -> TaskState:
    return (await rt.get_task(task_id)).state


def assistant_count(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if m["role"] == "assistant")


# Parallelism -------------------------------------------------------------------
async def test_many_agents_run_in_parallel(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    n = 50
    rt = await make_runtime([agent_def(f"a{i}") for i in range(n)],
                            {"m": script([{"say": "done {instruction}"}], latency_ms=200)})
    started = time.perf_counter()
    tasks = await asyncio.gather(*(rt.create_task(f"a{i}", f"job {i}") for i in range(n)))
    finished = await asyncio.gather(*(rt.wait_task(t.id, timeout=10) for t in tasks))
    wall = time.perf_counter() - started

    assert [t.state for t in finished] == [DONE] * n
    assert [t.result for t in finished] == [f"done job {i}" for i in range(n)]
    assert wall < 2.5, f"{n} tasks of 200 ms took {wall:.2f}s: they did not run concurrently"


def gauge_tool(gauge: dict[str, int]) -> Tool:
    async def hold(seconds: float) -> str:
        """Occupy the task for a while, counting how many tasks do so at once."""
        gauge["now"] += 1
        gauge["peak"] = max(gauge["peak"], gauge["now"])
        try:
            await asyncio.sleep(seconds)
        finally:
            gauge["now"] -= 1
        return "held"

    return make_tool(hold)


async def test_per_agent_concurrency_limit(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    gauge = {"now": 0, "peak": 0}
    rt = await make_runtime(
        [agent_def("limited", tools=["hold"], max_concurrent_tasks=2)],
        {"m": script([{"tool_calls": [{"tool": "hold", "args": {"seconds": 0.15}}]},
                      {"say": "ok"}])},
        tools=[gauge_tool(gauge)])
    agent = rt.agent("limited")
    sampled: list[int] = []

    async def sample() -> None:
        while True:
            sampled.append(len(agent.running_tasks))
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        tasks = [await rt.create_task("limited", f"job {i}") for i in range(6)]
        assert len(agent.queued_tasks) + len(agent.running_tasks) == 6
        finished = await asyncio.gather(*(rt.wait_task(t.id, timeout=10) for t in tasks))
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)

    assert [t.state for t in finished] == [DONE] * 6
    assert gauge["peak"] == 2
    assert max(sampled) == 2
    # Three rounds of two: the limit really held work back.
    stored = await rt.store.list_tasks(agent="limited")
    assert all(t.started_at is not None and t.finished_at is not None for t in stored)
    latest_start = max(t.started_at or 0 for t in stored)
    earliest_end = min(t.finished_at or 0 for t in stored)
    assert latest_start >= earliest_end


# Isolation ---------------------------------------------------------------------
async def test_tasks_of_one_agent_are_isolated(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery,
) -> None:
    model = script([
        {"say": "noting", "tool_calls": [{"tool": "note", "args": {"text": "{instruction}"}}]},
        {"say": "reading", "tool_calls": [{"tool": "read_notes"}]},
        {"say": "{last_tool_result}"},
    ], latency_ms=80)
    rt = await make_runtime([agent_def("painter", tools=["note", "read_notes"])], {"m": model})
    red, blue = await asyncio.gather(rt.create_task("painter", "always say RED"),
                                     rt.create_task("painter", "always say BLUE"))
    red_done, blue_done = await asyncio.gather(rt.wait_task(red.id, timeout=5),
                                               rt.wait_task(blue.id, timeout=5))

    # They really ran at the same time.
    red_row, blue_row = await rt.store.get_task(red.id), await rt.store.get_task(blue.id)
    assert red_row is not None and blue_row is not None
    assert red_row.finished_at is not None and blue_row.finished_at is not None
    assert (red_row.started_at or 0) < blue_row.finished_at
    assert (blue_row.started_at or 0) < red_row.finished_at
    # Each scratchpad saw only its own task's note.
    assert json.loads(red_done.result or "") == ["always say RED"]
    assert json.loads(blue_done.result or "") == ["always say BLUE"]
    for task_id, own, other in ((red.id, "RED", "BLUE"), (blue.id, "BLUE", "RED")):
        conversation = json.dumps(await rt.store.load_messages(task_id))
        assert own in conversation
        assert other not in conversation
        notes = await events(rt, task_id=task_id, types=["task.note"])
        assert [e.data["text"] for e in notes] == [f"always say {own}"]


async def test_slow_agent_does_not_delay_fast_agent(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime(
        [agent_def("slow", model="slow"), agent_def("fast", model="fast")],
        {"slow": script([{"say": "slow done"}], latency_ms=1000),
         "fast": script([{"say": "fast done"}])})
    slow = await rt.create_task("slow", "take your time")
    started = time.perf_counter()
    fast = await rt.create_task("fast", "hurry")
    fast_done = await rt.wait_task(fast.id, timeout=5)
    elapsed = time.perf_counter() - started

    assert fast_done.state is DONE
    assert elapsed < 0.5
    assert await state_of(rt, slow.id) is TaskState.RUNNING
    assert (await rt.wait_task(slow.id, timeout=5)).state is DONE


async def test_wait_task_record_of_a_done_task_has_finished_at(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime([agent_def("w")], {"m": script([{"say": "ok"}])})
    task = await rt.create_task("w", "job")
    done = await rt.wait_task(task.id, timeout=5)
    stored = await rt.store.get_task(task.id)
    assert stored is not None and stored.finished_at is not None
    assert done.state is DONE
    assert done.finished_at == stored.finished_at


# Restart policies: tasks ---------------------------------------------------------
async def test_on_failure_retries_and_resumes_from_last_completed_step(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery,
) -> None:
    model = script([
        {"say": "first", "tool_calls": [{"tool": "note", "args": {"text": "x"}}]},
        {"say": "second", "error": "boom", "fail_times": 1},
    ])
    rt = await make_runtime([agent_def("w", tools=["note"], policy="on-failure")],
                            {"m": model})
    task = await rt.create_task("w", "job")
    done = await rt.wait_task(task.id, timeout=5)

    assert done.state is DONE
    assert done.attempt == 1
    assert done.step == 2
    assert done.result == "second"
    assert model.calls == 3  # step 0, step 1 failing, step 1 again (not step 0 again)
    messages = await rt.store.load_messages(task.id)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool",
                                             "assistant"]
    assert len(await rt.store.list_tasks(agent="w")) == 1
    failed = await events(rt, task_id=task.id, types=["task.failed"])
    assert [(e.data["kind"], e.data["retryable"], e.data["step"]) for e in failed] == [
        ("model", True, 1)]
    assert "boom" in failed[0].data["error"]
    retries = await events(rt, task_id=task.id, types=["task.retry_scheduled"])
    assert [e.data["attempt"] for e in retries] == [1]
    resumed = await events(rt, task_id=task.id, types=["task.resumed"])
    assert [e.data["from_step"] for e in resumed] == [1]


async def test_on_failure_gives_up_after_max_restarts(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    model = script([{"say": "never", "error": "always down"}])
    rt = await make_runtime([agent_def("w", policy="on-failure", max_restarts=2)],
                            {"m": model})
    task = await rt.create_task("w", "job")
    failed = await rt.wait_task(task.id, timeout=5)
    assert failed.state is FAILED
    assert failed.error_kind == "model"
    assert failed.attempt == 2
    assert model.calls == 3


async def test_policy_never_leaves_a_failed_task_failed(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery,
) -> None:
    model = script([{"say": "x", "error": "boom", "fail_times": 1}])
    rt = await make_runtime([agent_def("w", policy="never")], {"m": model})
    task = await rt.create_task("w", "job")
    failed = await rt.wait_task(task.id, timeout=5)

    assert failed.state is FAILED
    assert failed.error_kind == "model"
    assert "boom" in (failed.error or "")
    assert failed.attempt == 0
    assert failed.finished_at is not None
    assert model.calls == 1
    assert await events(rt, task_id=task.id, types=["task.retry_scheduled"]) == []
    stored = await rt.store.get_task(task.id)
    assert stored is not None and stored.state is FAILED and stored.error_kind == "model"


async def test_policy_always_restarts_a_finished_task_as_a_new_task(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil,
) -> None:
    rt = await make_runtime([agent_def("watcher", policy="always", max_restarts=2)],
                            {"m": script([{"say": "checked {instruction}"}])})
    first = await rt.create_task("watcher", "watch the door")

    async def three_done() -> bool:
        tasks = await rt.store.list_tasks(agent="watcher")
        return len(tasks) == 3 and all(t.state is DONE for t in tasks)

    await wait_until(three_done, what="three finished runs")
    await rt.wait_idle(5)
    await asyncio.sleep(0.2)  # a fourth run (which would be wrong) would start by now
    tasks = await rt.store.list_tasks(agent="watcher")
    assert len(tasks) == 3
    by_attempt = sorted(tasks, key=lambda t: t.attempt)
    assert by_attempt[0].id == first.id
    assert [t.attempt for t in by_attempt] == [0, 1, 2]
    assert [t.parent_id for t in by_attempt] == [None, by_attempt[0].id, by_attempt[1].id]
    assert [t.created_by for t in by_attempt] == ["api", "restart-policy", "restart-policy"]
    assert all(t.instruction == "watch the door" for t in tasks)
    assert all(t.result == "checked watch the door" for t in tasks)


@pytest.mark.parametrize("policy", ["always", "on-failure"])
async def test_wait_idle_waits_for_restart_policy_retries(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    policy: str,
) -> None:
    steps = ([{"say": "ok"}] if policy == "always"
             else [{"say": "ok", "error": "boom", "fail_times": 1}])
    rt = await make_runtime([agent_def("w", policy=policy, max_restarts=2)],
                            {"m": script(steps)})
    await rt.create_task("w", "job")
    await rt.wait_idle(5)
    tasks = await rt.store.list_tasks(agent="w")
    expected = 3 if policy == "always" else 1
    assert [t.state for t in tasks] == [DONE] * expected


async def test_scripted_fail_times_is_per_task(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime([agent_def("w", policy="never")],
                            {"m": script([{"say": "x", "error": "boom", "fail_times": 1}])})
    one = await rt.create_task("w", "same words")
    two = await rt.create_task("w", "same words")
    results = await asyncio.gather(rt.wait_task(one.id, timeout=5),
                                   rt.wait_task(two.id, timeout=5))
    assert [r.state for r in results] == [FAILED, FAILED]


async def test_notes_survive_a_resume(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    model = script([
        {"tool_calls": [{"tool": "note", "args": {"text": "remember me"}}]},
        {"tool_calls": [{"tool": "read_notes"}], "error": "boom", "fail_times": 1},
        {"say": "{last_tool_result}"},
    ])
    rt = await make_runtime([agent_def("w", tools=["note", "read_notes"])], {"m": model})
    task = await rt.create_task("w", "job")
    done = await rt.wait_task(task.id, timeout=5)
    assert done.attempt == 1
    assert json.loads(done.result or "") == ["remember me"]


# Restart policies: agents --------------------------------------------------------
@pytest.fixture
def crash_once(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Make the dispatcher of the agent named in ``control["agent"]`` crash once.

    With ``control["after_loops"] = n`` it crashes only once it has started n tasks, so
    running tasks are caught in the crash.
    """
    original = AgentRunner._dispatch
    control: dict[str, Any] = {"agent": None, "after_loops": 0, "crashed": 0}

    async def flaky(self: AgentRunner) -> None:
        if self.name != control["agent"] or control["crashed"]:
            await original(self)
            return
        control["crashed"] += 1
        inner = asyncio.ensure_future(original(self))
        try:
            while len(self.running_tasks) < control["after_loops"]:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        finally:
            inner.cancel()
            await asyncio.gather(inner, return_exceptions=True)
        raise RuntimeError("dispatcher exploded")

    monkeypatch.setattr(AgentRunner, "_dispatch", flaky)
    return control


async def test_crashed_agent_is_restarted_and_its_tasks_finish(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery, wait_until: WaitUntil, crash_once: dict[str, Any],
) -> None:
    crash_once.update(agent="crashy", after_loops=2)
    model = script(note_steps(2), latency_ms=50)
    rt = await make_runtime([agent_def("crashy", tools=["note"], policy="on-failure"),
                             agent_def("calm", tools=["note"])], {"m": model})
    crashy = [await rt.create_task("crashy", f"c{i}") for i in range(2)]
    calm = [await rt.create_task("calm", f"k{i}") for i in range(2)]
    finished = await asyncio.gather(*(rt.wait_task(t.id, timeout=5) for t in crashy + calm))

    assert crash_once["crashed"] == 1
    assert [t.state for t in finished] == [DONE] * 4
    assert all(t.step == 3 for t in finished)
    crashy_agent = rt.agent("crashy")
    assert crashy_agent.state is AgentState.RUNNING
    assert crashy_agent.record.restarts == 1
    crashed = await events(rt, agent="crashy", types=["agent.crashed"])
    assert [e.data["error"] for e in crashed] == ["RuntimeError: dispatcher exploded"]
    assert "Traceback" in crashed[0].data["traceback"]
    assert len(await events(rt, agent="crashy", types=["agent.restarting"])) == 1
    transitions = [(e.data["from"], e.data["to"])
                   for e in await events(rt, agent="crashy", types=["agent.state"])]
    assert transitions == [("created", "running"), ("running", "failed"),
                           ("failed", "running")]
    # The tasks caught in the crash went back to the queue and resumed.
    for task in crashy:
        kinds = [(e.data["from"], e.data["to"])
                 for e in await events(rt, task_id=task.id, types=["task.state"])]
        assert ("running", "queued") in kinds
        assert kinds[-1] == ("running", "done")
    # The other agent never noticed.
    assert await events(rt, agent="calm", types=["agent.crashed", "agent.restarting"]) == []
    assert [(e.data["from"], e.data["to"])
            for e in await events(rt, agent="calm", types=["agent.state"])] == [
        ("created", "running")]


async def test_crashed_agent_with_policy_never_stays_failed(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery, wait_until: WaitUntil, crash_once: dict[str, Any],
) -> None:
    crash_once.update(agent="fragile")
    rt = await make_runtime([agent_def("fragile", policy="never"), agent_def("calm")],
                            {"m": script([{"say": "ok"}])})
    await wait_until(lambda: rt.agent("fragile").state is AgentState.FAILED,
                     what="the agent to fail")
    stuck = await rt.create_task("fragile", "job")
    other = await rt.create_task("calm", "job")
    assert (await rt.wait_task(other.id, timeout=5)).state is DONE
    await asyncio.sleep(0.1)  # would be long enough to run it, if the agent ran

    assert rt.agent("fragile").state is AgentState.FAILED
    assert "RuntimeError: dispatcher exploded" in rt.agent("fragile").record.reason
    assert await state_of(rt, stuck.id) is QUEUED
    gave_up = await events(rt, agent="fragile", types=["agent.gave_up"])
    assert [e.data["restarts"] for e in gave_up] == [0]
    assert await events(rt, agent="fragile", types=["agent.restarting"]) == []
    saved = await rt.store.load_agents()
    assert saved["fragile"].state is AgentState.FAILED

    # A person can start it again; its queued task then runs.
    await rt.start_agent("fragile")
    assert (await rt.wait_task(stuck.id, timeout=5)).state is DONE


async def test_bad_model_spec_fails_the_agent_not_the_runtime(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery, wait_until: WaitUntil,
) -> None:
    rt = await make_runtime([agent_def("broken", model="nosuch:thing"), agent_def("fine")],
                            {"m": script([{"say": "ok"}])})
    await wait_until(lambda: rt.agent("broken").state is AgentState.FAILED,
                     what="the agent to fail")
    assert "unknown provider 'nosuch'" in rt.agent("broken").record.reason
    crashed = await events(rt, agent="broken", types=["agent.crashed"])
    assert crashed[0].data["config_error"] is True
    # A configuration error is not retried, even under on-failure.
    assert len(await events(rt, agent="broken", types=["agent.gave_up"])) == 1
    task = await rt.create_task("fine", "job")
    assert (await rt.wait_task(task.id, timeout=5)).state is DONE


class ExplodingModel(ScriptedModel):
    """Raises a non-model exception (a bug in a provider) for 'explode' instructions."""

    async def stream(self, messages: list[Message], tools: list[ToolSpec]
                     ) -> AsyncIterator[StreamEvent]:
        if any(m.role == "user" and "explode" in (m.content or "") for m in messages):
            raise KeyError("provider bug")
        async for item in super().stream(messages, tools):
            yield item


async def test_failing_tasks_do_not_take_down_the_agent(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, events: EventQuery,
) -> None:
    model = ExplodingModel(ScriptFile.model_validate({"latency_ms": 30, "scripts": [
        {"match": "doomed", "steps": [{"say": "x", "error": "model is down"}]},
        {"match": "tool", "steps": [
            {"tool_calls": [{"tool": "word_count", "raw_args": "not json"}]},
            {"say": "recovered from {last_tool_result}"}]},
        {"steps": [{"say": "ok {instruction}"}]},
    ]}))
    rt = await make_runtime([agent_def("w", tools=["word_count"], policy="never")],
                            {"m": model})
    doomed = await rt.create_task("w", "doomed job")
    exploding = await rt.create_task("w", "explode please")
    tooling = await rt.create_task("w", "tool job")
    fine = [await rt.create_task("w", f"fine {i}") for i in range(3)]
    results = await asyncio.gather(*(rt.wait_task(t.id, timeout=5)
                                     for t in [doomed, exploding, tooling, *fine]))

    assert [(r.state, r.error_kind) for r in results[:2]] == [(FAILED, "model"),
                                                              (FAILED, "internal")]
    assert "KeyError" in (results[1].error or "")
    assert results[2].state is DONE
    assert "not valid JSON" in (results[2].result or "")
    assert [r.state for r in results[3:]] == [DONE] * 3
    assert rt.agent("w").state is AgentState.RUNNING
    assert await events(rt, agent="w", types=["agent.crashed"]) == []
    internal = await events(rt, task_id=exploding.id, types=["task.failed"])
    assert "KeyError: 'provider bug'" in internal[0].data["traceback"]
    later = await rt.create_task("w", "after the failures")
    assert (await rt.wait_task(later.id, timeout=5)).state is DONE


# Lifecycle -----------------------------------------------------------------------
@pytest.mark.parametrize(("hold", "release", "held_state"), [
    ("pause_agent", "resume_agent", AgentState.PAUSED),
    ("sleep_agent", "wake_agent", AgentState.SLEEPING),
])
async def test_pause_and_sleep_hold_tasks_at_a_step_boundary(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery, wait_until: WaitUntil, hold: str, release: str,
    held_state: AgentState,
) -> None:
    steps = 4
    model = script(note_steps(steps - 1), latency_ms=60)
    rt = await make_runtime([agent_def("w", tools=["note"])], {"m": model})
    running = [await rt.create_task("w", f"job {i}") for i in range(2)]

    async def all_started() -> bool:
        return all([await step_of(rt, t.id) >= 1 for t in running])

    await wait_until(all_started, what="both tasks to complete a step")
    await getattr(rt, hold)("w")
    assert rt.agent("w").state is held_state

    async def all_waiting() -> bool:
        return all([await state_of(rt, t.id) is TaskState.WAITING for t in running])

    await wait_until(all_waiting, what="both tasks to wait")
    held_steps = [await step_of(rt, t.id) for t in running]
    calls = model.calls
    late = await rt.create_task("w", "created while held")
    await asyncio.sleep(0.2)  # would be several steps, if anything still ran
    assert model.calls == calls
    assert [await step_of(rt, t.id) for t in running] == held_steps
    assert await state_of(rt, late.id) is QUEUED
    assert [r.id for r in rt.agent("w").queued_tasks] == [late.id]
    stored = await rt.store.get_task(running[0].id)
    assert stored is not None and stored.state is TaskState.WAITING
    for task in running:
        waits = [e for e in await events(rt, task_id=task.id)
                 if e.type == "task.waiting"
                 or (e.type == "task.state" and e.data.get("to") == "waiting")]
        assert waits, "no event recorded that the task waits"
        assert held_state.value in json.dumps(waits[0].data)

    await getattr(rt, release)("w")
    finished = await asyncio.gather(*(rt.wait_task(t.id, timeout=5)
                                      for t in [*running, late]))
    assert [t.state for t in finished] == [DONE] * 3
    assert [t.step for t in finished] == [steps] * 3
    assert model.calls == 3 * steps  # no step was played twice


async def test_stop_agent_requeues_and_start_agent_resumes(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery, wait_until: WaitUntil,
) -> None:
    steps = 4
    model = script(note_steps(steps - 1), latency_ms=60)
    rt = await make_runtime([agent_def("w", tools=["note"]),
                             agent_def("other", model="other")],
                            {"m": model, "other": script([{"say": "ok"}])})
    tasks = [await rt.create_task("w", f"job {i}") for i in range(2)]

    async def all_started() -> bool:
        return all([await step_of(rt, t.id) >= 1 for t in tasks])

    await wait_until(all_started, what="both tasks to complete a step")
    await rt.stop_agent("w")
    agent = rt.agent("w")
    assert agent.state is AgentState.STOPPED
    assert agent.running_tasks == []
    stopped_steps = [await step_of(rt, t.id) for t in tasks]
    calls_at_stop = model.calls
    await asyncio.sleep(0.2)  # would be several steps, if anything still ran
    assert model.calls == calls_at_stop
    for task in tasks:
        stored = await rt.store.get_task(task.id)
        assert stored is not None and stored.state is QUEUED
    # Other agents are untouched.
    other = await rt.create_task("other", "job")
    assert (await rt.wait_task(other.id, timeout=5)).state is DONE

    await rt.start_agent("w")
    finished = await asyncio.gather(*(rt.wait_task(t.id, timeout=5) for t in tasks))
    assert [t.state for t in finished] == [DONE, DONE]
    assert [t.step for t in finished] == [steps, steps]
    # Only the steps that were left were played after the restart.
    assert model.calls - calls_at_stop == sum(steps - s for s in stopped_steps)
    for task, stopped_at in zip(tasks, stopped_steps, strict=True):
        messages = await rt.store.load_messages(task.id)
        assert [m["role"] for m in messages[:2]] == ["system", "user"]
        assert [m["role"] for m in messages].count("user") == 1
        assert assistant_count(messages) == steps
        resumed = await events(rt, task_id=task.id, types=["task.resumed"])
        assert [e.data["from_step"] for e in resumed] == [stopped_at]


async def one_running_one_queued(make_runtime: RuntimeFactory, agent_def: AgentFactory,
                                 script: ScriptFactory, wait_until: WaitUntil
                                 ) -> tuple[Runtime, TaskRecord, TaskRecord]:
    """An agent that runs one task at a time, its first task running (steps of a second
    each: still running when cancelled, however slowly a busy machine gets there) and
    its second queued behind it."""
    rt = await make_runtime([agent_def("w", tools=["note"], max_concurrent_tasks=1)],
                            {"m": script(note_steps(3), latency_ms=1000)})
    running = await rt.create_task("w", "first")
    queued = await rt.create_task("w", "second")
    await wait_until(lambda: [r.id for r in rt.agent("w").running_tasks] == [running.id],
                     what="the first task to run")
    return rt, running, queued


async def test_cancel_running_and_queued_tasks(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil,
) -> None:
    rt, running, queued = await one_running_one_queued(make_runtime, agent_def, script,
                                                       wait_until)
    assert [r.id for r in rt.agent("w").queued_tasks] == [queued.id]

    cancelled_queued = await rt.cancel_task(queued.id)
    assert cancelled_queued.state is TaskState.CANCELLED
    waiter = asyncio.ensure_future(rt.wait_task(running.id, timeout=30))
    cancelled_running = await rt.cancel_task(running.id)
    assert cancelled_running.state is TaskState.CANCELLED
    assert (await waiter).state is TaskState.CANCELLED
    for task_id in (running.id, queued.id):
        stored = await rt.store.get_task(task_id)
        assert stored is not None
        assert stored.state is TaskState.CANCELLED
        assert stored.finished_at is not None
    assert rt.agent("w").running_tasks == [] and rt.agent("w").queued_tasks == []
    assert rt.agent("w").state is AgentState.RUNNING
    after = await rt.create_task("w", "third")
    assert (await rt.wait_task(after.id, timeout=60)).state is DONE
    assert await state_of(rt, queued.id) is TaskState.CANCELLED


async def test_a_task_cancelled_while_the_store_is_read_is_not_queued_again(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A look at the store that read a task as queued just before it was cancelled
    must not hand it back to its agent (failed once in CI on PostgreSQL: the cancelled
    task sat in the agent's queue)."""
    rt, running, queued = await one_running_one_queued(make_runtime, agent_def, script,
                                                       wait_until)
    real_list = rt.store.list_tasks
    read, go_on = asyncio.Event(), asyncio.Event()

    async def slow_list(*args: Any, **kwargs: Any) -> Any:
        found = await real_list(*args, **kwargs)  # read before the cancel ...
        read.set()
        await go_on.wait()  # ... returned after it
        return found

    monkeypatch.setattr(rt.store, "list_tasks", slow_list)
    look = asyncio.ensure_future(rt._look_at_store())
    await read.wait()
    assert (await rt.cancel_task(queued.id)).state is TaskState.CANCELLED
    go_on.set()
    await look
    monkeypatch.setattr(rt.store, "list_tasks", real_list)
    assert rt.agent("w").queued_tasks == []
    await rt.cancel_task(running.id)


async def test_a_task_settled_before_a_read_began_is_taken_by_it_while_reads_overlap(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Leaving out a task that settled during a read must not outlive that read: a task
    settled (seen failed, say) and queued again for a retry is taken by the next read,
    even when reads keep overlapping (on a busy machine tasks stayed queued forever)."""
    rt, running, queued = await one_running_one_queued(make_runtime, agent_def, script,
                                                       wait_until)
    agent = rt.agent("w")
    await agent.drop_queued(queued.id)  # out of the agent's queue, still queued in store
    real_list = rt.store.list_tasks
    gates: list[tuple[asyncio.Event, asyncio.Event]] = []

    async def held_list(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("agent") != "w":  # the runtime's own looks: not held
            return await real_list(*args, **kwargs)
        read, go_on = asyncio.Event(), asyncio.Event()
        gates.append((read, go_on))
        found = await real_list(*args, **kwargs)
        read.set()
        await go_on.wait()
        return found

    monkeypatch.setattr(rt.store, "list_tasks", held_list)
    first = asyncio.ensure_future(rt.stored_queued("w"))
    await wait_until(lambda: len(gates) == 1 and gates[0][0].is_set(), what="read 1")
    rt.settle(queued)  # settled during read 1 (a retry will queue it again) ...
    second = asyncio.ensure_future(rt.stored_queued("w"))  # ... and read 2 begins after
    await wait_until(lambda: len(gates) == 2 and gates[1][0].is_set(), what="read 2")
    third = asyncio.ensure_future(rt.stored_queued("w"))  # read 3 overlaps read 2
    await wait_until(lambda: len(gates) == 3, what="read 3")
    gates[0][1].set()
    assert queued.id not in [r.id for r in await first]  # it settled during read 1
    gates[1][1].set()
    assert queued.id in [r.id for r in await second]  # read 2 began after it settled
    gates[2][1].set()
    assert queued.id in [r.id for r in await third]
    monkeypatch.setattr(rt.store, "list_tasks", real_list)
    await rt.cancel_task(running.id)


async def test_a_tool_result_that_is_not_stored_fails_the_task_and_nothing_after_lands(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tool result's write is waited for with the next step's (the model is called
    meanwhile). If it does not land, the task fails with its error and the step queued
    behind it lands nothing: the stored conversation has no hole."""
    rt = await make_runtime([agent_def("w", tools=["note"])], {"m": script(note_steps(3))})
    real_queue = rt.store.queue_step
    broken: list[int] = []

    def queue_step(task_id: str, first_seq: int, messages: Any, **kwargs: Any) -> Any:
        if messages and messages[0]["role"] == "tool" and not broken:
            broken.append(first_seq)  # stored one place too far: refused as a hole
            return real_queue(task_id, first_seq + 1, messages, **kwargs)
        return real_queue(task_id, first_seq, messages, **kwargs)

    monkeypatch.setattr(rt.store, "queue_step", queue_step)
    task = await rt.create_task("w", "work")
    ended = await rt.wait_task(task.id, timeout=60)
    await rt.store.flush()
    [failed] = await rt.store.query_events(task_id=task.id, types=["task.failed"])
    assert "message 3 is not stored" in failed.data["error"]
    assert failed.data["step"] == 1 and broken == [3]
    # Retried (on-failure, the default), it resumed after the reply the store kept: the
    # lost call ran again, and every call has exactly one result, right after it.
    assert ended.state is DONE
    stored = [Message.from_dict(m) for m in await rt.store.load_messages(task.id)]
    calls = [c.id for m in stored if m.role == "assistant" for c in m.tool_calls]
    results = [m.tool_call_id for m in stored if m.role == "tool"]
    assert len(calls) == 3 and results == calls
    for i, message in enumerate(stored):
        if message.role == "tool":
            assert stored[i - 1].role == "assistant"
            assert [c.id for c in stored[i - 1].tool_calls] == [message.tool_call_id]


async def test_cancel_task_with_a_pending_retry(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    model = script([{"say": "ran", "error": "boom", "fail_times": 1}])
    rt = await make_runtime([agent_def("w", backoff_initial_s=0.2)], {"m": model})
    scheduled = rt.events.subscribe(lambda e: e.type == "task.retry_scheduled")
    task = await rt.create_task("w", "job")
    await asyncio.wait_for(scheduled.get(), 5)
    assert (await rt.cancel_task(task.id)).state is TaskState.CANCELLED
    await asyncio.sleep(0.4)  # past the backoff
    assert await state_of(rt, task.id) is TaskState.CANCELLED
    assert model.calls == 1


async def test_unknown_agents_and_tasks(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime([agent_def("alpha"), agent_def("beta")],
                            {"m": script([{"say": "ok"}])})
    with pytest.raises(UnknownAgentError, match=r"unknown agent 'ghost' \(known agents: "
                                                r"alpha, beta\)"):
        await rt.create_task("ghost", "boo")
    for call in (rt.pause_agent, rt.resume_agent, rt.stop_agent, rt.start_agent,
                 rt.sleep_agent, rt.wake_agent):
        with pytest.raises(UnknownAgentError, match="'ghost'"):
            await call("ghost")
    for task_call in (rt.cancel_task, rt.get_task, rt.wait_task):
        with pytest.raises(UnknownTaskError, match="unknown task 't_nope'"):
            await task_call("t_nope")
    with pytest.raises(WakefulError, match="the instruction is empty"):
        await rt.create_task("alpha", "   ")
    with pytest.raises(WakefulError, match="the limit is 100000"):
        await rt.create_task("alpha", "x" * 100_001)
    with pytest.raises(WakefulError, match="already exists"):
        await rt.add_agent(agent_def("alpha"))
    assert await rt.store.list_tasks() == []
    assert all(s.state is AgentState.RUNNING for s in rt.statuses())


async def test_add_agent_while_running(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime([], {"m": script([{"say": "hi from {instruction}"}])})
    await rt.add_agent(agent_def("late"))
    task = await rt.create_task("late", "late job")
    assert (await rt.wait_task(task.id, timeout=5)).result == "hi from late job"


# Shutdown and resume -------------------------------------------------------------
@pytest.mark.sqlite_only
async def test_clean_shutdown_and_resume_in_a_new_runtime(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery, wait_until: WaitUntil, db_path: Path,
) -> None:
    slow_steps = [
        {"say": "first", "tool_calls": [{"tool": "note", "args": {"text": "a"}}],
         "latency_ms": 0},
        {"say": "second", "tool_calls": [{"tool": "note", "args": {"text": "b"}}],
         "latency_ms": 5000},
        {"say": "finished {instruction}", "latency_ms": 5000},
    ]
    definitions = [agent_def("w", tools=["note"])]
    rt = await make_runtime(definitions, {"m": script(slow_steps)})
    tasks = [await rt.create_task("w", f"job {i}") for i in range(3)]

    async def all_at_step_one() -> bool:
        return all([await step_of(rt, t.id) == 1 for t in tasks])

    await wait_until(all_at_step_one, what="every task to finish its first step")
    started = time.perf_counter()
    await rt.stop()
    assert time.perf_counter() - started < 2.0
    assert asyncio.all_tasks() == {asyncio.current_task()}

    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("SELECT state, step FROM tasks ORDER BY id").fetchall()
        ended = conn.execute("SELECT ended_at FROM runs").fetchall()
    finally:
        conn.close()
    assert rows == [("queued", 1)] * 3
    assert ended[0][0] is not None

    fast_steps = [{k: v for k, v in s.items() if k != "latency_ms"} for s in slow_steps]
    fast = script(fast_steps)
    again = await make_runtime(definitions, {"m": fast})
    finished = await asyncio.gather(*(again.wait_task(t.id, timeout=5) for t in tasks))
    assert [t.state for t in finished] == [DONE] * 3
    assert [t.step for t in finished] == [3] * 3
    assert [t.result for t in finished] == [f"finished job {i}" for i in range(3)]
    assert fast.calls == 2 * 3  # only the two steps that were left, for each task
    for task in tasks:
        messages = await again.store.load_messages(task.id)
        assert [m["role"] for m in messages] == [
            "system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
        resumed = await events(again, task_id=task.id, types=["task.resumed"])
        assert [e.data["from_step"] for e in resumed] == [1]
    await again.stop()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_stopped_and_paused_agents_stay_so_across_restarts(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    definitions = [agent_def("stopped"), agent_def("paused"), agent_def("normal")]
    rt = await make_runtime(definitions, {"m": script([{"say": "ok"}])})
    await rt.stop_agent("stopped")
    await rt.pause_agent("paused")
    waiting = await rt.create_task("stopped", "later")
    await rt.stop()

    again = await make_runtime(definitions, {"m": script([{"say": "ok"}])})
    assert {s.name: s.state for s in again.statuses()} == {
        "stopped": AgentState.STOPPED, "paused": AgentState.PAUSED,
        "normal": AgentState.RUNNING}
    assert await state_of(again, waiting.id) is QUEUED
    await again.start_agent("stopped")
    assert (await again.wait_task(waiting.id, timeout=5)).state is DONE


async def test_start_twice_is_refused_and_stop_is_idempotent(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime([agent_def("a")], {"m": script([{"say": "ok"}])})
    with pytest.raises(WakefulError, match="already started"):
        await rt.start()
    await rt.stop()
    await rt.stop()


async def test_model_error_type_is_public() -> None:
    # The scripted model raises ModelError, which is what makes error_kind "model".
    model = ScriptedModel.from_steps([{"say": "x", "error": "down"}])
    with pytest.raises(ModelError, match="down"):
        await model.complete([Message(role="user", content="hi")], [])


async def test_wait_idle_counts_a_task_stored_but_not_yet_picked_up(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    # As another process (or a timer waking a task that held no loop) would: the task is
    # in the store, and this worker looks at the store only every minute. Idle in memory
    # is not idle: `wakeful run --until-idle` must not stop with this task left undone.
    from wakeful.runtime.agent import new_task_record

    rt = await make_runtime([agent_def("a")], {"m": script([{"say": "done"}])},
                            poll_interval_s=60)
    await rt.wait_idle(10)
    record = new_task_record("a", "stored elsewhere", created_by="other-process")
    await rt.store.create_task(record)
    await rt.wait_idle(30)
    done = await rt.store.get_task(record.id)
    assert done is not None and done.state is TaskState.DONE


async def test_wait_idle_waits_for_a_task_handed_over_while_it_read_the_store(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    # The task's doorbell arrives while wait_idle reads the store: the watcher hands the
    # task to its agent, so the read finds it already seen. Seen is not done: wait_idle
    # must not return while that task runs (it did, under load, on PostgreSQL).
    from wakeful.runtime.agent import new_task_record

    rt = await make_runtime([agent_def("a")], {"m": script([{"say": "done"}], latency_ms=200)},
                            poll_interval_s=60)
    await rt.wait_idle(10)
    record = new_task_record("a", "rung during the read", created_by="other-process")
    await rt.store.create_task(record)
    read = rt.stored_queued

    async def doorbell_meanwhile(agent: str | None = None) -> list[TaskRecord]:
        found = await read(agent)
        rt._accept_queued(found)  # as the store watcher would, woken by the doorbell
        return found

    rt.stored_queued = doorbell_meanwhile  # type: ignore[method-assign]
    await rt.wait_idle(30)
    done = await rt.store.get_task(record.id)
    assert done is not None and done.state is TaskState.DONE
