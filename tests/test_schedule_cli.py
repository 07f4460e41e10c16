"""The command line shows timers: ``wakeful timers``, ``wakeful why`` and progress in
``wakeful tasks``, read from the store beside a running runtime."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from schedule_support import until
from wakeful.cli import app
from wakeful.project.loader import load_project
from wakeful.runtime.runtime import Runtime

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.stdout, result.stderr


def test_timers_after_the_demo(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    code, out, err = invoke("demo", str(folder))
    assert code == 0, err
    code, out, _ = invoke("timers", "-p", str(folder))
    assert code == 0 and "No active timers" in out
    code, out, _ = invoke("timers", "-p", str(folder), "--all", "--json")
    assert code == 0
    assert '"agent": "monitor"' in out and '"fired": 2' in out and '"state": "done"' in out
    assert '"when": "every 1s"' in out and '"max_runs": 2' in out
    code, _, err = invoke("timers", "-p", str(folder), "--agent", "ghost")
    assert code == 1 and "unknown agent 'ghost'" in err


def write_project(root: Path) -> None:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "wakeful.yaml").write_text("name: nap-test\n")
    (root / "agents" / "napper.yaml").write_text(
        "name: napper\nmodel: scripted:napper\n"
        "tools: [report_progress, sleep_for]\n"
        "schedule:\n  - cron: '0 9 * * 1-5'\n    timezone: Europe/Paris\n"
        "    instruction: morning nap\n")
    (root / "scripts" / "napper.yaml").write_text(
        "scripts:\n  - steps:\n"
        "      - tool_calls: [{tool: report_progress, args: {percent: 25, note: dozing}}]\n"
        "      - tool_calls: [{tool: sleep_for, args: {duration: 1h}}]\n"
        "      - say: rested\n")


async def test_why_timers_and_tasks_show_a_sleeping_task(tmp_path: Path) -> None:
    write_project(tmp_path)
    runtime = Runtime.from_project(load_project(tmp_path))
    await runtime.start()
    try:
        task = await runtime.create_task("napper", "take a nap")
        await until(lambda: runtime.waits.waiting(task.id) is not None, 10, "the nap")
        await runtime.store.flush()
        p = ("-p", str(tmp_path))
        code, out, err = await asyncio.to_thread(invoke, "why", "napper", *p)
        assert code == 0, err
        assert f"{task.id}: waiting on sleeping until" in out
        assert "wakes at" in out and "(in 60m)" in out
        assert "next wake-up:" in out and "start a task on napper: morning nap" in out
        assert "cron 0 9 * * 1-5 (Europe/Paris)" in out
        code, out, _ = await asyncio.to_thread(invoke, "timers", *p)
        assert code == 0 and "Timers (2)" in out
        code, out, _ = await asyncio.to_thread(invoke, "timers", "--json", *p)
        found = {t["action"]: t for t in json.loads(out)}
        assert found["wake_task"]["task_id"] == task.id
        assert found["wake_task"]["purpose"] == "time"
        assert found["start_task"]["instruction"] == "morning nap"
        assert found["start_task"]["next_due"].endswith("T09:00:00+01:00")
        code, out, _ = await asyncio.to_thread(invoke, "tasks", *p)
        assert code == 0 and "25% dozing" in out
    finally:
        await runtime.stop()
