"""Progress: report_progress, the status tools and their access rules, and the example
monitor agent (scripted, offline) flagging a stuck, a looping and a failing agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

import wakeful
from schedule_support import (
    START,
    Factory,
    call,
    steps,
    until,
)
from wakeful.core.states import TaskState
from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.project.definitions import AgentDefinition, LoopGuards, ScheduleEntry
from wakeful.project.loader import load_agent_file
from wakeful.schedule.clock import FakeClock, RealClock

EXAMPLE = Path(wakeful.__file__).parent / "examples" / "team"
STATUS_TOOLS = ["report_progress", "agent_status", "task_status", "sleep_for"]


def tool_results(messages: list[dict[str, Any]]) -> list[Any]:
    out = []
    for m in messages:
        if m["role"] == "tool":
            try:
                out.append(json.loads(m["content"]))
            except ValueError:
                out.append(m["content"])
    return out


async def test_report_progress_is_stored_shown_and_recorded(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    worker = steps(call("report_progress", percent=40, note="drafted part one"),
                   call("sleep_for", duration="1h"), {"say": "finished"})
    rt = await make_runtime(
        [AgentDefinition(name="worker", model="worker", tools=STATUS_TOOLS)],
        {"worker": worker}, clock=clock)
    task = await rt.create_task("worker", "write the report")
    await until(lambda: rt.waits.waiting(task.id) is not None, 10, "the sleep")
    status = await rt.progress.task_status(task.id)
    assert status["progress"] == 40 and status["progress_note"] == "drafted part one"
    # Step 2 is under way: its reply is stored (durable steps), its sleep_for runs.
    assert status["state"] == "waiting" and status["step"] == 2
    assert status["waiting_for"].startswith("sleeping until 2023-11-14T23:13:20Z")
    assert status["wakes_at"] == "2023-11-14T23:13:20Z"
    assert status["tokens"] > 0 and status["idle_s"] >= 0
    assert any("task.progress: 40%  drafted part one" in line
               for line in status["recent_events"])
    stored = await rt.store.get_task(task.id)
    assert stored is not None and (stored.progress, stored.progress_note) == (
        40.0, "drafted part one")
    await clock.advance(3600)
    assert (await rt.wait_task(task.id, 10)).state is TaskState.DONE
    bad = steps(call("report_progress", percent=140), {"say": "x"})
    rt.models.register("bad", bad)
    await rt.add_agent(AgentDefinition(name="bad", model="bad", tools=STATUS_TOOLS))
    done = await rt.wait_task((await rt.create_task("bad", "oops")).id, 10)
    [error] = tool_results(await rt.store.load_messages(done.id))
    assert "percent" in error and "less than or equal to 100" in error


async def test_status_tools_follow_the_access_rules(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    nosy = steps(call("agent_status"), call("agent_status", agent="boss"),
                 call("task_status", task_id="{instruction}"), {"say": "done"})
    watcher = steps(call("agent_status"), call("agent_status", agent="worker"),
                    call("task_status", task_id="{instruction}"), {"say": "done"})
    worker = steps(call("sleep_for", duration="1h"), {"say": "done"})
    rt = await make_runtime(
        [AgentDefinition(name="worker", model="worker", tools=STATUS_TOOLS,
                         schedule=[ScheduleEntry(every="2h", instruction="recheck")]),
         AgentDefinition(name="boss", model="done"),
         AgentDefinition(name="nosy", model="nosy", tools=STATUS_TOOLS),
         AgentDefinition(name="watcher", model="watcher", tools=STATUS_TOOLS,
                         can_watch=["*"])],
        {"worker": worker, "done": steps({"say": "ok"}), "nosy": nosy, "watcher": watcher},
        clock=clock)
    sleeping = await rt.create_task("worker", "sleep")
    await until(lambda: rt.waits.waiting(sleeping.id) is not None, 10, "the sleep")

    denied = await rt.wait_task((await rt.create_task("nosy", sleeping.id)).id, 10)
    own, boss, task = tool_results(await rt.store.load_messages(denied.id))
    assert [a["agent"] for a in own] == ["nosy"]  # it sees itself only
    assert "may not see the status of agent 'boss'" in boss
    assert "refused and recorded" in boss
    assert "may not see the tasks of agent 'worker'" in task
    refusals = await rt.store.query_events(types=["monitor.access_denied"])
    assert [e.data["target"] for e in refusals] == ["boss", "worker"]

    allowed = await rt.wait_task((await rt.create_task("watcher", sleeping.id)).id, 10)
    everyone, worker_status, task_status = tool_results(
        await rt.store.load_messages(allowed.id))
    assert [a["agent"] for a in everyone] == ["boss", "nosy", "watcher", "worker"]
    assert worker_status["state"] == "running"
    assert worker_status["tasks"]["running"] == 1
    assert worker_status["tasks"]["finished"] == 0
    assert worker_status["this_run"]["started"] == 1
    # Tokens count once a step commits: the sleeper's first step is still under way.
    # Its first reply (the sleep_for call) is stored with its tokens before it sleeps.
    assert worker_status["tokens_used"] > 0
    assert {a["agent"]: a["tokens_used"] > 0 for a in everyone}["nosy"]
    [current] = worker_status["current_tasks"]
    assert current["task_id"] == sleeping.id and current["state"] == "waiting"
    assert worker_status["next_wake"]["does"] == "start a task on worker: recheck"
    assert worker_status["next_wake"]["at"] == "2023-11-15T00:13:20Z"
    assert worker_status["recent_events"]
    assert task_status["task_id"] == sleeping.id and task_status["timers"][0]["state"] == \
        "active"


def monitor_model(stuck_after_s: float) -> ScriptedModel:
    """The example monitor's own script, with a threshold a test can wait for."""
    data = yaml.safe_load((EXAMPLE / "scripts" / "monitor.yaml").read_text())
    data["latency_ms"] = 10
    [check] = [script for script in data["scripts"]
               if script["steps"][0].get("tool_calls", [{}])[0].get("tool") == "check_agents"]
    check["steps"][0]["tool_calls"][0]["args"]["stuck_after_s"] = stuck_after_s
    return ScriptedModel(ScriptFile.model_validate(data))


async def test_the_example_monitor_flags_stuck_looping_and_failed_work_once(
        make_runtime: Factory) -> None:
    example = load_agent_file(EXAMPLE / "agents" / "monitor.yaml")
    assert example.can_watch == ["*"] and example.schedule[0].every == "1s"
    monitor = example.model_copy(update={
        # Reporting only: its escalations (pause, cancel) are tested in test_control.py.
        "can_control": [],
        "model": "monitor", "schedule": [ScheduleEntry(every="400ms", max_runs=8,
                                                       instruction="Check on the team")]})
    stuck = steps({"say": "thinking", "tool_calls": [{"tool": "note", "args": {"text": "a"}}]},
                  {"say": "still thinking", "latency_ms": 60_000})
    looper = steps(*[call("note", text="same again") for _ in range(12)],
                   {"say": "done"}, latency_ms=150)
    breaker = steps({"say": "x", "error": "the provider is down"})
    rt = await make_runtime(
        [monitor,
         AgentDefinition(name="coordinator", model="quiet"),
         AgentDefinition(name="stuck", model="stuck", tools=["note"]),
         AgentDefinition(name="looper", model="looper", tools=["note"],
                         guards=LoopGuards(repeated_call_limit=20)),
         AgentDefinition(name="breaker", model="breaker", restart={"policy": "never"})],
        {"monitor": monitor_model(stuck_after_s=0.6), "quiet": steps({"say": "ok"}),
         "stuck": stuck, "looper": looper, "breaker": breaker},
        clock=RealClock())
    await rt.mailbox.create_channel("alerts", ["monitor", "person:operator"])
    hung = await rt.create_task("stuck", "think hard")
    loop = await rt.create_task("looper", "take notes")
    broken = await rt.create_task("breaker", "call the provider")

    def alerts() -> list[str]:
        return [d.mail.subject for d in rt.mailbox.claim("coordinator", limit=100)]

    subjects: list[str] = []

    async def all_flagged() -> bool:
        subjects.extend(s for s in alerts() if s.startswith("["))
        return {s.split("]")[0] for s in subjects} >= {"[stuck", "[looping", "[failed"}

    await until(all_flagged, 15, "the monitor to flag all three")
    await until(lambda: sum(1 for t in rt.scheduler.active() if t.agent == "monitor") == 0,
                15, "the monitor's last run")
    subjects.extend(s for s in alerts() if s.startswith("["))
    assert f"[stuck] stuck/{hung.id}" in subjects
    assert f"[looping] looper/{loop.id}" in subjects
    assert f"[failed] breaker/{broken.id}" in subjects
    assert len(subjects) == len(set(subjects))  # each problem reported once
    posts = [m.subject for m in await rt.mailbox.history(None, "alerts")]
    assert sorted(posts) == sorted(subjects)
    runs = [t for t in await rt.store.list_tasks(agent="monitor")]
    assert len(runs) >= 3 and {t.created_by for t in runs} == {"schedule"}
    flagged = await rt.store.query_events(types=["monitor.alert"])
    assert len(flagged) == len(subjects)
