"""Workers sharing one store: agents owned by lease, task runs claimed, writes fenced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from polling import until
from wakeful.core.states import TaskState
from wakeful.errors import FenceError, OutcomeUnknownError, StoreError
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel
from wakeful.project.definitions import AgentDefinition
from wakeful.runtime.runtime import Runtime
from wakeful.store.sqlite import SQLiteStore
from wakeful.tools.builtin import default_tools

STEPS = [{"say": "one", "tool_calls": [{"tool": "word_count", "args": {"text": "a b"}}]},
         {"say": "two", "tool_calls": [{"tool": "word_count", "args": {"text": "c"}}]},
         {"say": "done {instruction}"}]
NAMES = ["a", "b", "c", "d"]

Make = Callable[..., Runtime]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    made: list[Runtime] = []

    def build(lease_s: float = 10.0, latency_ms: float = 0) -> Runtime:
        models = ModelRegistry(tmp_path / "scripts")
        model = ScriptedModel.from_steps(STEPS, latency_ms=latency_ms)
        models.register("m", model)
        runtime = Runtime(
            store=SQLiteStore(tmp_path / "wakeful.db"), models=models, tools=default_tools(),
            agents=[AgentDefinition(name=n, model="m", tools=["word_count"],
                                    max_concurrent_tasks=3) for n in NAMES],
            poll_interval_s=0.02, lease_s=lease_s)
        made.append(runtime)
        return runtime

    yield build
    for runtime in reversed(made):
        await runtime.stop()


def calls(runtime: Runtime) -> int:
    model = runtime.models.get("m")
    assert isinstance(model, ScriptedModel)
    return model.calls


async def test_two_runtimes_split_the_agents_and_run_each_task_once(make: Make) -> None:
    first, second = make(), make()
    await first.start()
    await second.start()
    # The first took every agent while alone; it hands some to the second as both see
    # two live workers.
    await until(lambda: second.ownership.held and first.ownership.held, 10,
                "agents spread over both workers")
    assert set(first.ownership.held).isdisjoint(second.ownership.held)
    records = [await first.create_task(n, f"job {n}{k}") for n in NAMES for k in range(3)]
    for record in records:
        done = await first.wait_task(record.id, 30)
        assert done.state is TaskState.DONE
    # Each task asked the model exactly once per step: 3 steps x 12 tasks.
    assert calls(first) + calls(second) == 36
    for record in records:
        said = [m["content"] for m in await first.store.load_messages(record.id)
                if m["role"] == "assistant"]
        assert said == ["one", "two", f"done {record.instruction}"]


async def test_a_task_submitted_twice_runs_once(make: Make) -> None:
    runtime = make()
    await runtime.start()
    record = await runtime.create_task("a", "only once")
    runtime.agents["a"].submit(record)  # as a racing watcher would
    assert (await runtime.wait_task(record.id, 10)).state is TaskState.DONE
    await until(lambda: not runtime.agents["a"].busy(), 10, "the agent idle")
    assert calls(runtime) == 3


async def test_stop_hands_agents_over_at_once(make: Make) -> None:
    first = make(lease_s=3600)  # a lease that would never lapse during the test
    await first.start()
    assert set(first.ownership.held) == set(NAMES)
    queued = await first.create_task("a", "left for the next worker")
    await first.stop()
    second = make(lease_s=3600)
    await second.start()
    assert set(second.ownership.held) == set(NAMES)
    assert (await second.wait_task(queued.id, 10)).state is TaskState.DONE


async def test_a_worker_that_lost_its_lease_stops_the_agent_and_is_fenced(make: Make) -> None:
    slow = make(lease_s=0.6, latency_ms=150)
    await slow.start()
    record = await slow.create_task("a", "long")
    await until(lambda: slow.agents["a"].running_tasks, 10, "the task running")
    old = slow.ownership.fence("a")
    assert old is not None
    # Another worker takes agent a (its lease made to lapse, as for a stalled owner).
    store = slow.store
    await store.expire_workers([slow.ownership.worker_id])
    grants = await store.acquire_agents("w_other", ["a"], 60, 1)
    assert [g.agent for g in grants] == ["a"] and grants[0].epoch == old.epoch + 1
    assert record.id in grants[0].requeued
    await until(lambda: not slow.ownership.owns("a"), 10, "the lease loss noticed")
    await until(lambda: not slow.agents["a"].running_tasks, 10, "its loops stopped")
    with pytest.raises(FenceError, match="no longer owns agent 'a'"):
        await store.update_task(record.id, old, state="done")
    stored = await store.get_task(record.id)
    assert stored is not None and stored.state is TaskState.QUEUED
    assert stored.step < 3  # the stale worker did not finish it


async def test_claims_are_won_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "wakeful.db")
    await store.open()
    try:
        from wakeful.runtime.agent import new_task_record

        [grant] = await store.acquire_agents("w1", ["a"], 60, 1)
        record = new_task_record("a", "x")
        await store.create_task(record)
        from wakeful.core.records import Fence

        fence = Fence("a", "w1", grant.epoch)
        results = await asyncio.gather(*(store.claim_task(record.id, fence)
                                         for _ in range(5)))
        assert sum(r is not None for r in results) == 1
        # A worker that does not hold the lease cannot claim at all.
        with pytest.raises(FenceError):
            await store.claim_task(record.id, Fence("a", "w2", grant.epoch))
    finally:
        await store.close()


async def test_status_lists_live_workers_and_their_agents(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from wakeful.cli import app
    from wakeful.cli.main import copy_example
    from wakeful.project.loader import load_project

    copy_example(tmp_path)
    runtime = Runtime.from_project(load_project(tmp_path))
    await runtime.start()
    try:
        result = await asyncio.to_thread(CliRunner().invoke, app, ["status", "-p",
                                                                   str(tmp_path)])
    finally:
        await runtime.stop()
    assert result.exit_code == 0, result.output
    line = next(li for li in result.output.splitlines() if li.startswith("Workers:"))
    assert runtime.ownership.worker_id in line
    assert "coordinator" in line and "monitor" in line


async def test_commands_for_another_workers_agent_are_carried_out_by_its_owner(
        make: Make) -> None:
    owner = make(latency_ms=50)
    await owner.start()
    other = make(lease_s=10.0)
    other.ownership.round = _never  # type: ignore[method-assign]  # owns nothing
    await other.start()
    assert not other.ownership.held and set(owner.ownership.held) == set(NAMES)
    await other.pause_agent("a")
    await until(lambda: owner.agents["a"].state.value == "paused", 10, "a paused by its owner")
    long = await owner.create_task("c", "to be cancelled")
    await until(lambda: owner.agents["c"].running_tasks, 10, "the task running")
    await other.cancel_task(long.id)
    assert (await owner.wait_task(long.id, 10)).state is TaskState.CANCELLED
    await other.stop_agent("d")
    await until(lambda: owner.agents["d"].state.value == "stopped", 10, "d stopped")
    events = await owner.store.query_events(types=["agent.command_forwarded"])
    assert [e.data["command"] for e in events] == ["pause", "cancel", "stop"]


async def _never() -> None:
    return None


async def test_agents_whose_adoption_failed_are_given_back_and_run_later(make: Make) -> None:
    """The store cut off while a worker starts the agents it just took (a read fails):
    it must not keep their leases with no loop running, their tasks queued for ever."""
    runtime = make()
    await runtime.start()
    record = await runtime.create_task("a", "after the blip")
    assert (await runtime.wait_task(record.id, 30)).state is TaskState.DONE
    # Agent a is handed back, then taken again with the store failing mid-adoption.
    epoch = runtime.ownership.held["a"]
    await runtime._hand_over("a")
    runtime.ownership.held.pop("a")
    await runtime.ownership.release({"a": epoch})
    load = runtime.store.load_agents
    failures = []

    async def failing_once() -> object:
        if not failures:
            failures.append(1)
            raise ConnectionError("connection lost")
        return await load()

    runtime.store.load_agents = failing_once  # type: ignore[method-assign]
    await runtime.ownership.round()
    assert failures and "a" not in runtime.ownership.held  # given back, not kept idle
    again = await runtime.create_task("a", "once a runs again")
    assert (await runtime.wait_task(again.id, 60)).state is TaskState.DONE
    assert "a" in runtime.ownership.held
    events = await runtime.store.query_events(types=["agent.handed_over"], agent="a")
    assert len(events) == 2


async def test_a_claim_whose_commit_was_lost_puts_the_task_back_and_runs_it_once(
        make: Make) -> None:
    """A claim's connection lost as it committed: the claim may have landed. The task
    is neither failed (it never ran) nor left running with no loop: it is put back and
    taken again, and runs once."""
    runtime = make()
    store = runtime.store
    claim = store.claim_task
    lost: list[str] = []

    async def committed_then_lost(task_id: str, *args: object, **kwargs: object) -> object:
        result = await claim(task_id, *args, **kwargs)  # type: ignore[arg-type]
        if not lost:
            lost.append(task_id)
            raise StoreError("the connection was lost while committing")
        return result

    update = store.update_task
    put_back_lost: list[str] = []

    async def first_put_back_lost(task_id: str, *args: object, **kwargs: object) -> object:
        if lost and not put_back_lost and kwargs.get("state") == TaskState.QUEUED.value:
            put_back_lost.append(task_id)  # its answer lost too, before it committed
            raise OutcomeUnknownError("the connection was lost while committing")
        return await update(task_id, *args, **kwargs)  # type: ignore[arg-type]

    store.claim_task = committed_then_lost  # type: ignore[method-assign]
    store.update_task = first_put_back_lost  # type: ignore[method-assign]
    await runtime.start()
    record = await runtime.create_task("b", "claimed in the dark")
    done = await runtime.wait_task(record.id, 60)
    assert lost == [record.id] and put_back_lost == [record.id]
    assert done.state is TaskState.DONE and done.result == "done claimed in the dark"
    assert calls(runtime) == len(STEPS)  # each step asked once: it ran once
    events = await store.query_events(types=["task.claim_failed"], task_id=record.id)
    assert len(events) == 1
