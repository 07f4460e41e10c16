"""Runtime.wait_task: whoever waits for a task hears it end, however the end and the
wait's first read of the task interleave."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory, ScriptFactory


async def test_a_task_that_fails_for_good_during_the_first_read_wakes_its_waiter(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    # The first read of the task returns it as it was (queued) while, meanwhile, it
    # fails for good (no retry) and settles. The waiter used to be registered only
    # after that read, so nothing woke it, and a failed task of an agent this worker
    # runs was not taken as final from the store either: it waited out its timeout
    # (seen in CI under load). The read is held open here until the task settled.
    model = script([{"say": "never", "error": "boom", "fail_times": 99}])
    rt = await make_runtime([agent_def("w", policy="never")], {"m": model})
    read = rt.get_task
    settled: list[str] = []
    rt.on_settle(lambda record: settled.append(record.id))

    async def stale_read(task_id: str) -> TaskRecord:
        before = await read(task_id)
        while task_id not in settled:
            await rt.wait_changed()
        return before

    rt.get_task = stale_read  # type: ignore[method-assign]
    task = await rt.create_task("w", "fails at once")
    ended = await rt.wait_task(task.id, timeout=60)
    assert ended.state is TaskState.FAILED
    assert settled == [task.id]
    assert rt._settled == {}  # nothing left waiting
