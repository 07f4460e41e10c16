"""Agents made at run time: spawned within the parent's means, stored (they survive a
restart and other workers see them), removed with their running tasks finished or
cancelled, and agent files reloaded while the team runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import AgentFactory, EventQuery, RuntimeFactory
from polling import until
from schedule_support import call, steps
from wakeful.cli.main import app as cli
from wakeful.core.states import TaskState
from wakeful.errors import WakefulError
from wakeful.project.definitions import AgentLimits
from wakeful.project.loader import load_project
from wakeful.runtime.build import runtime_for_project
from wakeful.runtime.reload import AgentFileWatcher

SLOW = {"say": "working", "latency_ms": 60_000}


def tool_results(messages: list[dict[str, object]]) -> list[str]:
    return [str(m["content"]) for m in messages if m["role"] == "tool"]


async def test_a_spawned_agent_is_refused_a_tool_its_parent_lacks(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, events: EventQuery) -> None:
    lead = steps(
        call("spawn_agent", name="greedy", instructions="x", tools=["note", "write_file"]),
        call("spawn_agent", name="other-model", instructions="x", model="scripted:else"),
        call("spawn_agent", name="helper", instructions="take notes", tools=["note"],
             first_task="note this"),
        {"say": "done"})
    rt = await make_runtime(
        [agent_def("lead", model="m", can_spawn=True, tools=["spawn_agent", "note"]),
         agent_def("plain", model="m", tools=["spawn_agent"])],
        {"m": lead})
    task = await rt.wait_task((await rt.create_task("lead", "build a team")).id, 10)
    greedy, other, helper = tool_results(await rt.store.load_messages(task.id))
    assert "may use only tools its parent 'lead' has; it lacks ['write_file']" in greedy
    assert "only its parent's model ('m')" in other
    made = json.loads(helper)
    assert made["agent"] == "helper" and made["tools"] == ["note"] and made["model"] == "m"
    assert "greedy" not in rt.agents and "helper" in rt.agents
    refused = await events(rt, types=["agent.spawn_refused"])
    assert [e.data["name"] for e in refused] == ["greedy", "other-model"]
    [created] = await events(rt, types=["agent.created"])
    assert created.data == {"by": f"lead/{task.id}", "parent": "lead", "version": 1}
    child = await rt.wait_task(made["task_id"], 10)
    assert child.agent == "helper" and child.state is TaskState.DONE
    # Without a grant, nothing is spawned.
    denied = await rt.wait_task((await rt.create_task("plain", "try")).id, 10)
    assert "may not spawn agents" in tool_results(await rt.store.load_messages(denied.id))[0]


async def test_spawn_limits(make_runtime: RuntimeFactory, agent_def: AgentFactory) -> None:
    rt = await make_runtime([agent_def("lead", model="m", can_spawn={"max_agents": 1},
                                       tools=["note"])], {"m": steps({"say": "ok"})})
    await rt.admin.spawn_agent("lead", {"name": "one", "tools": ["note"]}, by="test")
    with pytest.raises(WakefulError, match=r"can_spawn\.max_agents of 'lead'"):
        await rt.admin.spawn_agent("lead", {"name": "two"}, by="test")
    rt.admin.limits = AgentLimits(max=2)
    with pytest.raises(WakefulError, match=r"agents.max: 2"):
        await rt.admin.create_agent({"name": "three", "model": "m"}, by="test")


async def test_an_agent_made_at_run_time_survives_a_restart(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, tmp_path: Path) -> None:
    models = {"m": steps({"say": "done: {instruction}"})}
    first = await make_runtime([agent_def("lead", model="m")], models)
    await first.admin.create_agent({"name": "helper", "model": "m", "role": "a helper",
                                    "tools": ["note"]}, by="person:ada")
    with pytest.raises(WakefulError, match="already exists"):
        await first.admin.create_agent({"name": "helper", "model": "m"}, by="person:ada")
    with pytest.raises(WakefulError, match="unknown tools"):
        await first.admin.create_agent({"name": "bad", "model": "m", "tools": ["nope"]},
                                       by="person:ada")
    await first.stop()
    again = await make_runtime([agent_def("lead", model="m")], models)
    assert again.agent("helper").definition.role == "a helper"
    task = await again.wait_task((await again.create_task("helper", "hello")).id, 10)
    assert task.state is TaskState.DONE and task.result == "done: hello"
    exported = again.admin.export_agent("helper")
    assert exported.startswith("name: helper\n") and "role: a helper" in exported
    with pytest.raises(WakefulError, match="defined by a file"):
        await again.admin.remove_agent("lead", by="person:ada")


async def test_other_workers_follow_creations_changes_and_removals(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, events: EventQuery) -> None:
    models = {"m": steps({"say": "done"})}
    one = await make_runtime([agent_def("lead", model="m")], models)
    two = await make_runtime([agent_def("lead", model="m")], models)
    await one.admin.create_agent({"name": "helper", "model": "m"}, by="person:ada")
    await until(lambda: "helper" in two.agents, 10, "the other worker to see it")
    await one.admin.update_agent("helper", {"model": "m", "role": "changed"}, by="person:ada")
    await until(lambda: two.agent("helper").definition.role == "changed", 10, "the change")
    await one.admin.remove_agent("helper", by="person:ada")
    await until(lambda: "helper" not in two.agents and "helper" not in one.agents, 10,
                "both to drop it")


@pytest.mark.parametrize("running", ["finish", "cancel"])
async def test_removing_an_agent_finishes_or_cancels_its_running_tasks(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, running: str) -> None:
    rt = await make_runtime([agent_def("lead", model="m")], {"m": steps({"say": "ok"})})
    rt.models.register("slow", steps({"say": "a", "latency_ms": 300}, {"say": "b"}))
    await rt.admin.create_agent({"name": "worker", "model": "slow",
                                 "max_concurrent_tasks": 1}, by="person:ada")
    busy = await rt.create_task("worker", "one")
    queued = await rt.create_task("worker", "two")
    await until(lambda: rt.agent("worker").running_tasks, 10, "the first to run")
    cancelled = await rt.admin.remove_agent("worker", running=running,  # type: ignore[arg-type]
                                            by="person:ada")
    assert queued.id in cancelled
    assert (await rt.store.get_task(queued.id)).state is TaskState.CANCELLED  # type: ignore[union-attr]
    await rt.admin.wait_removed("worker")
    ended = await rt.store.get_task(busy.id)
    assert ended is not None
    assert ended.state is (TaskState.DONE if running == "finish" else TaskState.CANCELLED)


async def test_an_agent_file_edited_while_running_is_reloaded_good_and_bad(
        tmp_path: Path) -> None:
    project = tmp_path / "team"
    assert CliRunner().invoke(cli, ["init", str(project)]).exit_code == 0
    runtime = runtime_for_project(load_project(project))
    lines: list[str] = []
    watcher = AgentFileWatcher(project / "agents", 3600, lines.append)
    runtime.add_service(watcher)
    await runtime.start()
    try:
        writer = project / "agents" / "writer.yaml"
        text = writer.read_text()
        writer.write_text(text.replace("role: a writer", "role: a poet"))
        await watcher.check()
        assert runtime.agent("writer").definition.role == "a poet"
        assert lines[-1].endswith("agent 'writer' reloaded")
        writer.write_text(text.replace("max_concurrent_tasks: 3", "max_concurrent_tasks: 0"))
        await watcher.check()
        assert runtime.agent("writer").definition.role == "a poet"  # the old one kept
        assert len(lines[-1].splitlines()) == 1
        assert "writer.yaml: field 'max_concurrent_tasks'" in lines[-1]
        assert lines[-1].endswith("(the old definition is kept)")
        (project / "agents" / "editor.yaml").write_text("name: editor\nrole: an editor\n")
        await watcher.check()
        assert "editor" in runtime.agents
        task = await runtime.wait_task((await runtime.create_task("writer", "a line")).id, 20)
        assert task.state is TaskState.DONE
        (project / "agents" / "editor.yaml").unlink()
        await watcher.check()
        await runtime.admin.wait_removed("editor")
        await runtime.store.flush()
        failed = await runtime.store.query_events(types=["agent.reload_failed"])
        assert [e.agent for e in failed] == ["writer"]
    finally:
        await runtime.stop()


def test_the_agent_cli_creates_updates_exports_and_removes(tmp_path: Path) -> None:
    project = tmp_path / "team"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(project)]).exit_code == 0
    p = ["-p", str(project)]
    made = runner.invoke(cli, ["agent", "create", "helper", "--role", "a helper",
                               "--tool", "note", *p])
    assert made.exit_code == 0, made.output
    assert runner.invoke(cli, ["agent", "update", "helper", "--role", "the helper", *p]
                         ).exit_code == 0
    exported = runner.invoke(cli, ["agent", "export", "helper", *p])
    assert exported.output == "name: helper\nrole: the helper\ntools:\n- note\n"
    assert "name: writer" in runner.invoke(cli, ["agent", "export", "writer", *p]).output
    bad = runner.invoke(cli, ["agent", "create", "x", "--tool", "nope", *p])
    assert bad.exit_code == 1 and "unknown tools ['nope']" in bad.output
    clash = runner.invoke(cli, ["agent", "update", "writer", "--role", "x", *p])
    assert clash.exit_code == 1 and "defined by a file" in clash.output
    assert runner.invoke(cli, ["agent", "remove", "helper", "--running", "cancel", *p]
                         ).exit_code == 0
    assert runner.invoke(cli, ["agent", "export", "helper", *p]).exit_code == 1


def test_wakeful_control_records_who_and_leaves_the_action_for_the_owner(
        tmp_path: Path) -> None:
    import sqlite3

    project = tmp_path / "team"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(project)]).exit_code == 0
    done = runner.invoke(cli, ["control", "pause", "writer", "-r", "maintenance",
                               "-p", str(project)])
    assert done.exit_code == 0, done.output
    with sqlite3.connect(project / "wakeful.db") as conn:
        [(command, argument)] = conn.execute(
            "SELECT command, argument FROM agent_commands WHERE agent = 'writer'").fetchall()
        [(data,)] = conn.execute(
            "SELECT data FROM events WHERE type = 'control.pause'").fetchall()
    assert command == "pause" and argument.endswith(": maintenance")
    recorded = json.loads(data)
    assert recorded["by"].startswith("cli") and recorded["reason"] == "maintenance"
    bad = runner.invoke(cli, ["control", "pause", "nobody", "-p", str(project)])
    assert bad.exit_code == 1 and "unknown agent 'nobody'" in bad.output
