"""Replay: a recorded multi-agent run re-runs offline to the same final state."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wakeful.cli import app
from wakeful.core.states import TaskState
from wakeful.errors import WakefulError
from wakeful.project.loader import load_project
from wakeful.runtime import replay as replay_module
from wakeful.runtime.replay import replay
from wakeful.runtime.runtime import Runtime
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import ToolRegistry, tool
from wakeful.tools.builtin import default_tools


@tool
async def hand_off(ctx: ToolContext, agent: str, instruction: str) -> str:
    """Start a task on another agent and wait for its result."""
    child = await ctx.runtime.create_task(agent, instruction)
    done = await ctx.runtime.wait_task(child.id, timeout=10)
    return f"{done.state.value}: {done.result or done.error}"


AGENTS = {
    "boss.yaml": "model: scripted:boss\ntools: [hand_off, current_time]\n",
    "worker.yaml": ("model: scripted:worker\ntools: [current_time, note]\n"
                    "max_concurrent_tasks: 3\n"
                    "restart: {policy: on-failure, backoff_initial_s: 0.01}\n"),
    "fragile.yaml": "model: scripted:fragile\nrestart: {policy: never}\n",
}
SCRIPTS = {
    "boss": """
scripts:
  - steps:
      - tool_calls:
          - {tool: hand_off, args: {agent: worker, instruction: "part one"}}
          - {tool: hand_off, args: {agent: worker, instruction: "part two"}}
      - tool_calls: [{tool: current_time}]
      - say: "boss finished at {last_tool_result}"
""",
    "worker": """
latency_ms: 5
scripts:
  - match: "one"
    steps:
      - tool_calls: [{tool: current_time}]
        error: "flaky provider"
        fail_times: 1
      - say: "one done at {last_tool_result}"
  - steps:
      - tool_calls: [{tool: note, args: {text: "x"}}]
      - say: "two done"
""",
    "fragile": """
scripts:
  - steps:
      - error: "provider is down"
""",
}


def make_project(root: Path) -> Path:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "wakeful.yaml").write_text(
        "name: replay-test\nstartup_tasks:\n"
        "  - {agent: boss, instruction: lead the work}\n"
        "  - {agent: fragile, instruction: try something}\n")
    for name, text in AGENTS.items():
        (root / "agents" / name).write_text(text)
    for name, text in SCRIPTS.items():
        (root / "scripts" / f"{name}.yaml").write_text(text)
    return root


def tools() -> ToolRegistry:
    registry = default_tools()
    registry.register(hand_off)
    return registry


@pytest.fixture
def rerun_hand_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """hand_off shapes the run (it starts tasks), so replay must run it again."""
    monkeypatch.setattr(replay_module, "RERUN_TOOLS", {*replay_module.RERUN_TOOLS, "hand_off"})


async def record(root: Path) -> None:
    runtime = Runtime.from_project(load_project(root), tools=tools())
    await runtime.start()
    await runtime.wait_idle(20)
    await runtime.stop()


@pytest.mark.usefixtures("rerun_hand_off")
async def test_recorded_run_replays_to_the_same_final_state(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    await record(root)
    project = load_project(root)
    result = await replay(project, keep=tmp_path / "replayed", tools=tools())

    assert result.identical, result.differences
    states = sorted((t.agent, t.state.value, t.attempt) for t in result.replayed.values())
    assert states == [("boss", "done", 0), ("fragile", "failed", 0),
                      ("worker", "done", 0), ("worker", "done", 1)]
    boss = next(t for t in result.replayed.values() if t.agent == "boss")
    # The clock was read during the recorded run; replay serves the recorded time.
    assert boss.result == result.recorded[boss.id].result
    assert boss.result is not None and boss.result.startswith("boss finished at 20")
    assert result.store_path is not None and result.store_path.exists()
    with sqlite3.connect(result.store_path) as conn:
        errors = conn.execute("SELECT COUNT(*) FROM events WHERE type = 'model.error'").fetchone()
    assert errors == (2,)  # the flaky call, and the fragile agent's failure, again


@pytest.mark.usefixtures("rerun_hand_off")
async def test_replay_reports_where_it_diverges(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    await record(root)
    with sqlite3.connect(root / "wakeful.db") as conn:
        conn.execute("UPDATE tasks SET result = 'tampered' WHERE agent = 'boss'")
    result = await replay(load_project(root), tools=tools())
    assert not result.identical
    [difference] = result.differences
    assert difference.field == "result" and difference.recorded == "tampered"
    assert result.replayed[difference.task_id].state is TaskState.DONE


async def test_replay_of_unknown_or_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    with pytest.raises(WakefulError, match="never run"):
        await replay(load_project(root))
    await record(root)
    with pytest.raises(WakefulError, match="unknown run 'run_nope'"):
        await replay(load_project(root), "run_nope")


def test_cli_replays_the_demo(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "demo"
    assert runner.invoke(app, ["demo", str(folder)]).exit_code == 0
    result = runner.invoke(app, ["replay", "-p", str(folder)])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "10 recorded tasks, 10 replayed" in result.stdout
    assert "Same final state" in result.stdout
