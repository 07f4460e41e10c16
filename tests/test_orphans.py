"""A queued task is never left held nowhere: a worker that counts a task as its own
(seen) must also hold it (queued, running, retrying or settling), or it would never run
it again while the store shows it queued. Stop 22's CI run ended with such a task."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from wakeful.core.states import TaskState
from wakeful.errors import OutcomeUnknownError
from wakeful.runtime import runtime as runtime_module
from wakeful.runtime.agent import new_task_record

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory, ScriptFactory
    from wakeful.core.records import TaskRecord
    from wakeful.models.scripted import ScriptedModel
    from wakeful.observe.events import Subscription
    from wakeful.runtime.runtime import Runtime


async def waiting_out_a_retry(make_runtime: RuntimeFactory, agent_def: AgentFactory,
                              script: ScriptFactory) -> tuple[Runtime, TaskRecord,
                                                              ScriptedModel]:
    """A runtime whose one task failed once and waits out an hour-long retry backoff."""
    model = script([{"say": "ran", "error": "boom", "fail_times": 1}])
    rt = await make_runtime([agent_def("w", backoff_initial_s=3600)], {"m": model})
    scheduled = rt.events.subscribe(lambda e: e.type == "task.retry_scheduled")
    task = await rt.create_task("w", "job")
    await asyncio.wait_for(scheduled.get(), 30)
    return rt, task, model


async def with_the_net_at_once(make_runtime: RuntimeFactory, agent_def: AgentFactory,
                               script: ScriptFactory, monkeypatch: pytest.MonkeyPatch
                               ) -> tuple[Runtime, Subscription]:
    """A runtime whose safety net takes a task held nowhere at its first sight, and a
    subscription to what it reclaims."""
    monkeypatch.setattr(runtime_module, "ORPHAN_GRACE_S", 0.0)
    rt = await make_runtime([agent_def("w")], {"m": script([{"say": "done"}])},
                            poll_interval_s=0.05)
    return rt, rt.events.subscribe(lambda e: e.type == "task.reclaimed")


async def test_a_task_waiting_out_a_retry_runs_after_its_agent_is_stopped_and_started(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The safety net below is turned off: this is about the hole itself. Stopping an
    # agent cancelled a pending retry's timer but kept the task counted as seen, so
    # starting the agent again did not load it from the store: queued for good.
    monkeypatch.setattr(runtime_module, "ORPHAN_GRACE_S", float("inf"), raising=False)
    rt, task, model = await waiting_out_a_retry(make_runtime, agent_def, script)

    await rt.stop_agent("w")
    stored = await rt.store.get_task(task.id)
    assert stored is not None and stored.state is TaskState.QUEUED
    await rt.start_agent("w")

    done = await rt.wait_task(task.id, timeout=60)
    assert done.state is TaskState.DONE
    assert model.calls == 2


async def test_a_task_seen_but_held_nowhere_is_taken_again(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whatever hole a future change opens, a task queued in the store that this worker
    # counts as seen but its agent holds nowhere is taken again after a grace period.
    rt, reclaimed = await with_the_net_at_once(make_runtime, agent_def, script, monkeypatch)
    await rt.wait_idle(30)
    record = new_task_record("w", "lost in between", created_by="other-process")
    rt._known.add(record.id)  # counted as seen, handed to nobody
    await rt.store.create_task(record)

    event = await asyncio.wait_for(reclaimed.get(), 60)
    assert event.task_id == record.id
    done = await rt.wait_task(record.id, timeout=60)
    assert done.state is TaskState.DONE


async def test_a_task_held_by_its_agent_is_not_taken_again(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The net must not catch a task its agent holds: a paused agent keeps its queued
    # task in hand through many reads of the store, and nothing is reclaimed.
    rt, reclaimed = await with_the_net_at_once(make_runtime, agent_def, script, monkeypatch)
    await rt.pause_agent("w")
    task = await rt.create_task("w", "held while paused")
    for _ in range(5):
        await rt._look_at_store()
    assert [r.id for r in rt.agent("w").queued_tasks] == [task.id]
    assert reclaimed.get_nowait() is None
    await rt.resume_agent("w")
    assert (await rt.wait_task(task.id, timeout=60)).state is TaskState.DONE


async def test_an_agent_given_away_while_a_task_waits_out_a_retry_forgets_that_task(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    # The same hole on the way a worker gives an agent away (lease lost or lapsed,
    # rebalancing): the pending retry was cancelled but the task stayed counted as seen
    # here, so if this worker took the agent back it never loaded that task again.
    rt, task, _ = await waiting_out_a_retry(make_runtime, agent_def, script)
    assert task.id in rt.agent("w").held()

    await rt._release_agent("w")
    assert task.id not in rt.agent("w").held()
    assert task.id not in rt._known


@pytest.mark.parametrize("landed", [True, False], ids=["commit-landed", "commit-lost"])
async def test_a_retry_whose_requeue_write_is_lost_still_runs(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    monkeypatch: pytest.MonkeyPatch, landed: bool,
) -> None:
    # The write that puts a failed task back in the queue for its retry loses its
    # commit's outcome (a killed connection): it may have landed or not. Either way the
    # retry must run. It used to end the agent's bookkeeping of the task with an error:
    # queued in the store (or failed), counted as seen here, held nowhere.
    monkeypatch.setattr(runtime_module, "ORPHAN_GRACE_S", float("inf"), raising=False)
    model = script([{"say": "ran", "error": "boom", "fail_times": 1}])
    rt = await make_runtime([agent_def("w")], {"m": model})
    real = rt.store.update_task
    lost: list[str] = []

    async def losing(task_id: str, *args: Any, **fields: Any) -> bool:
        if fields.get("state") == TaskState.QUEUED.value and "attempt" in fields and not lost:
            lost.append(task_id)
            if landed:
                await real(task_id, *args, **fields)
            raise OutcomeUnknownError("the connection was lost during COMMIT (injected)")
        return await real(task_id, *args, **fields)

    monkeypatch.setattr(rt.store, "update_task", losing)
    task = await rt.create_task("w", "job")
    done = await rt.wait_task(task.id, timeout=60)
    assert lost == [task.id]
    assert done.state is TaskState.DONE
    assert model.calls == 2
    stored = await rt.store.get_task(task.id)
    assert stored is not None and stored.state is TaskState.DONE and stored.attempt == 1


async def test_a_task_whose_loop_breaks_is_read_again_from_the_store(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A loop that ends with an error of its own (a bug) must not keep its task counted
    # as seen: the store still has it queued, and the next look at the store takes it.
    from wakeful.runtime.task_loop import TaskLoop

    monkeypatch.setattr(runtime_module, "ORPHAN_GRACE_S", float("inf"), raising=False)
    real = TaskLoop.run
    broken: list[str] = []

    async def breaks_once(self: TaskLoop) -> None:
        if not broken:
            broken.append(self.id)
            raise RuntimeError("a bug in the loop (injected)")
        await real(self)

    monkeypatch.setattr(TaskLoop, "run", breaks_once)
    rt = await make_runtime([agent_def("w")], {"m": script([{"say": "done"}])},
                            poll_interval_s=0.05)
    task = await rt.create_task("w", "job")
    done = await rt.wait_task(task.id, timeout=60)
    assert broken == [task.id]
    assert done.state is TaskState.DONE
