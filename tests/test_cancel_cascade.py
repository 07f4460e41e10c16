"""Cancelling a task cancels the tasks it delegated that have not ended (a remote A2A
agent's forwarding task is one of them), and nothing it did not delegate."""

from __future__ import annotations

from conftest import AgentFactory, RuntimeFactory, ScriptFactory, WaitUntil
from wakeful.core.states import TaskState


async def test_cancelling_a_delegator_cancels_its_delegated_task(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
        wait_until: WaitUntil) -> None:
    boss = script([{"tool_calls": [{"tool": "delegate_task", "args": {
        "agent": "slow", "instruction": "take your time"}}]}, {"say": "done"}])
    slow = script([{"say": "thinking", "latency_ms": 60_000}])
    rt = await make_runtime([agent_def("boss", model="boss", tools=["delegate_task"]),
                             agent_def("slow", model="slow")],
                            {"boss": boss, "slow": slow})
    bystander = await rt.create_task("slow", "not delegated")
    delegator = await rt.create_task("boss", "delegate")

    async def delegated() -> list[str]:
        return [t.id for t in await rt.store.child_tasks([delegator.id])]

    await wait_until(delegated, what="the delegated task")
    [child] = await delegated()
    await rt.cancel_task(delegator.id)
    assert (await rt.wait_task(child, 10)).state is TaskState.CANCELLED
    assert (await rt.get_task(delegator.id)).state is TaskState.CANCELLED
    assert (await rt.get_task(bystander.id)).state in (TaskState.RUNNING, TaskState.QUEUED)
