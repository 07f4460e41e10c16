"""Intervention: control tools under ``can_control``, every action recorded with who
and why, the example monitor's escalation, and a person undoing it over the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from conftest import AgentFactory, EventQuery, RuntimeFactory
from polling import until
from schedule_support import call, steps
from wakeful.core.people import Person, hash_token
from wakeful.core.states import AgentState, TaskState
from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.project.definitions import LoopGuards
from wakeful.project.loader import load_agent_file
from wakeful.runtime.runtime import Runtime
from wakeful.server import create_app
from wakeful.store.people import people_store

EXAMPLE = Path(__file__).resolve().parent.parent / "src" / "wakeful" / "examples" / "team"
TOKEN = "project-token-0123456789"
SLOW = {"say": "still working", "latency_ms": 60_000}


def tool_results(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "tool"]


async def test_a_control_tool_without_a_grant_is_refused_and_recorded(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, events: EventQuery) -> None:
    boss = steps(call("pause_agent", agent="worker", reason="too chatty"), {"say": "done"})
    rt = await make_runtime(
        [agent_def("boss", model="boss", tools=["pause_agent"]),
         agent_def("worker", model="worker")],
        {"boss": boss, "worker": steps({"say": "ok"})})
    task = await rt.wait_task((await rt.create_task("boss", "quiet the worker")).id, 10)
    [result] = tool_results(await rt.store.load_messages(task.id))
    assert "agent 'boss' may not pause agent 'worker'" in result
    assert "can_control" in result and "refused and recorded" in result
    assert rt.agent("worker").state is AgentState.RUNNING
    [refused] = await events(rt, types=["control.refused"])
    assert refused.agent == "worker"
    assert refused.data["by"] == f"boss/{task.id}" and refused.data["action"] == "pause"
    assert not await events(rt, types=["control.pause"])


async def test_granted_control_tools_act_and_record_who_and_why(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, events: EventQuery) -> None:
    boss = ScriptedModel(ScriptFile.model_validate({"scripts": [
        {"match": "pause", "steps": [call("pause_agent", agent="worker", reason="too chatty"),
                                     {"say": "paused"}]},
        {"match": "^t_", "steps": [
            call("cancel_task", task_id="{instruction}", reason="not needed"), {"say": "ok"}]},
        {"steps": [call("start_task", agent="worker", instruction="count", reason="go"),
                   {"say": "started"}]}]}))
    rt = await make_runtime(
        [agent_def("boss", model="boss", can_control=["worker"],
                   tools=["pause_agent", "cancel_task", "start_task"]),
         agent_def("worker", model="worker")],
        {"boss": boss, "worker": steps(SLOW)})
    slow = await rt.create_task("worker", "work slowly")
    paused = await rt.wait_task((await rt.create_task("boss", "pause it")).id, 10)
    assert paused.state is TaskState.DONE
    assert rt.agent("worker").state is AgentState.PAUSED
    assert rt.agent("worker").record.reason == f"paused by boss/{paused.id}: too chatty"
    [pause] = await events(rt, types=["control.pause"])
    assert pause.agent == "worker" and pause.correlation_id.startswith("c_")
    assert pause.data["by"] == f"boss/{paused.id}" and pause.data["reason"] == "too chatty"
    assert pause.data["undo"] == {"action": "resume", "target": "worker"}
    await rt.control("resume", "worker", by="person:ada", reason="let it go on")
    cancel = await rt.wait_task((await rt.create_task("boss", slow.id)).id, 10)
    assert cancel.state is TaskState.DONE
    assert (await rt.get_task(slow.id)).state is TaskState.CANCELLED
    [cancelled] = await events(rt, types=["control.cancel"])
    assert cancelled.data["task"] == slow.id
    assert cancelled.data["undo"] == {"action": "restart_task", "target": slow.id}
    # The undo of a cancel starts the task again, once.
    again = await rt.undo_control(cancelled.correlation_id or "", by="person:ada")
    assert again.task is not None and again.task.instruction == "work slowly"
    assert again.data["undoes"] == cancelled.correlation_id
    try:
        await rt.undo_control(cancelled.correlation_id or "", by="person:ada")
        raise AssertionError("undone twice")
    except Exception as exc:  # UndoError
        assert "undone already" in str(exc)


def example_monitor() -> tuple[Any, ScriptedModel]:
    """The example team's monitor (its file and script), checked on demand."""
    definition = load_agent_file(EXAMPLE / "agents" / "monitor.yaml")
    assert definition.can_control == ["*"] and "escalate" in definition.tools
    data = yaml.safe_load((EXAMPLE / "scripts" / "monitor.yaml").read_text())
    data["latency_ms"] = 1
    data["token_delay_ms"] = 0
    return (definition.model_copy(update={"model": "monitor", "schedule": []}),
            ScriptedModel(ScriptFile.model_validate(data)))


async def test_the_example_monitor_pauses_a_looping_agent_and_a_person_undoes_it(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, events: EventQuery) -> None:
    monitor, monitor_model = example_monitor()
    looping = steps(*[call("note", text="again") for _ in range(3)], SLOW)
    rt = await make_runtime(
        [monitor, agent_def("coordinator", model="quiet"),
         agent_def("looper", model="looper", tools=["note"],
                   guards=LoopGuards(repeated_call_limit=10))],
        {"monitor": monitor_model, "quiet": steps({"say": "noted"}), "looper": looping})
    await rt.mailbox.create_channel("alerts", ["monitor", "person:ada"])
    loop = await rt.create_task("looper", "take notes")
    await until(lambda: (s := rt.progress.streak(loop.id)) is not None and s.times >= 3,
                10, "the loop")
    first = await rt.wait_task((await rt.create_task("monitor", "Check on the team")).id, 10)
    assert first.state is TaskState.DONE
    assert rt.agent("looper").state is AgentState.RUNNING  # once is not yet twice
    second = await rt.wait_task((await rt.create_task("monitor", "Check on the team")).id, 10)
    assert second.state is TaskState.DONE, second.error
    assert rt.agent("looper").state is AgentState.PAUSED
    [pause] = await events(rt, types=["control.pause"])
    assert pause.agent == "looper" and pause.data["by"] == f"monitor/{second.id}"
    assert pause.data["reason"].startswith("looping in 2 checks in a row")
    # The coordinator and #alerts are told why.
    told = [d.mail for d in rt.mailbox.claim("coordinator", limit=100)]
    assert any(m.subject == "[pause] looper: looping" and "undo" in m.body for m in told)
    posts = await rt.mailbox.history(None, "alerts")
    assert any(p.subject == "[pause] looper: looping" for p in posts)
    # A person (an operator, with a token of their own) undoes it from the API.
    await people_store(rt.store).add(Person("ada", "operator"), hash_token("ada-token-0123456789"))
    app = create_app(rt, TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1", headers={
                                     "Authorization": "Bearer ada-token-0123456789"}) as client:
        listed = (await client.get("/api/agents/looper/controls")).json()["controls"]
        [shown] = [c for c in listed if c["action"] == "pause"]
        assert shown["by"] == f"monitor/{second.id}" and shown["undone_by"] is None
        undone = await client.post(f"/api/controls/{shown['control_id']}/undo",
                                   json={"reason": "I am watching it"})
        assert undone.status_code == 200, undone.text
        assert undone.json()["agent"]["state"] == "running"
        listed = (await client.get("/api/agents/looper/controls")).json()["controls"]
        assert [c["undone_by"] for c in listed if c["action"] == "pause"] == ["person:ada"]
        again = await client.post(f"/api/controls/{shown['control_id']}/undo")
        assert again.status_code == 409
    [resume] = await events(rt, types=["control.resume"])
    assert resume.data["by"] == "person:ada" and resume.data["undoes"] == pause.correlation_id
    # The next check does not overrule the person: the problem was acted on once.
    third = await rt.wait_task((await rt.create_task("monitor", "Check on the team")).id, 10)
    assert third.state is TaskState.DONE
    assert rt.agent("looper").state is AgentState.RUNNING
    assert len(await events(rt, types=["control.pause"])) == 1


async def test_a_monitor_without_a_grant_is_refused_and_recorded(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, events: EventQuery) -> None:
    monitor, monitor_model = example_monitor()
    monitor = monitor.model_copy(update={"can_control": []})
    looping = steps(*[call("note", text="again") for _ in range(3)], SLOW)
    rt = await make_runtime(
        [monitor, agent_def("coordinator", model="quiet"),
         agent_def("looper", model="looper", tools=["note"],
                   guards=LoopGuards(repeated_call_limit=10))],
        {"monitor": monitor_model, "quiet": steps({"say": "noted"}), "looper": looping})
    await rt.mailbox.create_channel("alerts", ["monitor"])
    loop = await rt.create_task("looper", "take notes")
    await until(lambda: (s := rt.progress.streak(loop.id)) is not None and s.times >= 3,
                10, "the loop")
    for _ in range(2):
        await rt.wait_task((await rt.create_task("monitor", "Check on the team")).id, 10)
    assert rt.agent("looper").state is AgentState.RUNNING
    [refused] = await events(rt, types=["control.refused"])
    assert refused.agent == "looper" and refused.data["action"] == "pause"


async def test_runtime_control_records_people_and_the_cli_alike(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, events: EventQuery) -> None:
    rt: Runtime = await make_runtime([agent_def("a", model="m")], {"m": steps({"say": "x"})})
    done = await rt.control("pause", "a", by="cli:ada", reason="maintenance")
    assert done.undo == {"action": "resume", "target": "a"}
    assert rt.agent("a").record.reason == "paused by cli:ada: maintenance"
    await rt.control("resume", "a", by="person:bob")
    await rt.control("sleep", "a", by="person:bob")
    [slept] = await events(rt, types=["control.sleep"])
    assert slept.data["reason"] == "no reason given" and slept.data["by"] == "person:bob"
