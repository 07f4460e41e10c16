"""A real ``wakeful run`` process killed with SIGKILL mid-task resumes where it stopped.

The runtime commits each completed step (model reply + tool results) in one
transaction; these tests kill the process between steps and check that the next run
continues from the last committed step: the stored conversation is exactly what an
uninterrupted run would have produced, with no step lost or played twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crash_store import CrashStore, crash_store

__all__ = ["crash_store"]
STEPS = 6


def make_project(root: Path, tasks: int, store: CrashStore) -> None:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    startup = "\n".join(
        f"  - {{agent: {'slow' if i % 2 == 0 else 'steady'}, instruction: 'job {i}'}}"
        for i in range(tasks))
    (root / "wakeful.yaml").write_text(
        f"name: crash-test\n{store.yaml()}startup_tasks:\n{startup}\n")
    for name in ("slow", "steady"):
        (root / "agents" / f"{name}.yaml").write_text(
            f"name: {name}\nmodel: scripted:steps\ntools: [note]\nmax_concurrent_tasks: 4\n")
    steps = "\n".join(
        f"      - say: 'step {i}'\n        tool_calls: [{{tool: note, args: {{text: 'n{i}'}}}}]"
        for i in range(STEPS))
    (root / "scripts" / "steps.yaml").write_text(
        f"latency_ms: 250\nscripts:\n  - steps:\n{steps}\n"
        "      - say: 'finished {instruction}'\n")


def wakeful(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "wakeful", *args, "-p", str(root)]


def wait_for_steps(store: CrashStore, minimum: int, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if store.has_run():
            rows = store.query("SELECT MIN(step) FROM tasks WHERE state = 'running'")
            if rows and rows[0][0] is not None and rows[0][0] >= minimum:
                return
        time.sleep(0.05)
    raise AssertionError(f"tasks never reached step {minimum}")


@pytest.mark.slow
def test_sigkill_mid_task_resumes_from_last_completed_step(
        tmp_path: Path, crash_store: CrashStore) -> None:
    make_project(tmp_path, tasks=4, store=crash_store)
    query = crash_store.query
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(wakeful(tmp_path, "run", "--plain"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_steps(crash_store, minimum=2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    killed = dict(query("SELECT id, step FROM tasks"))
    assert len(killed) == 4
    assert {s for (s,) in query("SELECT state FROM tasks")} <= {"running", "waiting"}
    assert all(2 <= step < STEPS + 1 for step in killed.values())

    done = subprocess.run(wakeful(tmp_path, "run", "--until-idle", "--plain"), env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    rows = query("SELECT id, state, step, result FROM tasks ORDER BY id")
    assert [r[1] for r in rows] == ["done"] * 4
    for task_id, _, step, result in rows:
        assert step == STEPS + 1
        assert str(result).startswith("finished job")
        messages = [json.loads(d) for (d,) in query(
            f"SELECT data FROM task_messages WHERE task_id = '{task_id}' ORDER BY seq")]
        said = [m["content"] for m in messages if m["role"] == "assistant"]
        # Exactly the script, in order: nothing lost, nothing played twice.
        assert said == [f"step {i}" for i in range(STEPS)] + [str(result)]
        assert sum(1 for m in messages if m["role"] == "tool") == STEPS

    runs = query("SELECT id, ended_at FROM runs ORDER BY started_at")
    assert len(runs) == 2 and runs[0][1] is None and runs[1][1] is not None
    second_run = runs[1][0]
    recovered = {r[0] for r in query("SELECT task_id FROM events WHERE type = "
                                         f"'task.recovered' AND run_id = '{second_run}'")}
    assert recovered == set(killed)
    resumed = {task_id: json.loads(data)["from_step"] for task_id, data in query(
        f"SELECT task_id, data FROM events WHERE type = 'task.resumed' AND run_id = "
        f"'{second_run}'")}
    assert resumed == killed
    calls = dict(query("SELECT task_id, COUNT(*) FROM events WHERE type = 'model.call' "
                           f"AND run_id = '{second_run}' GROUP BY task_id"))
    # The second run only made the calls the first one had not committed.
    assert calls == {task_id: STEPS + 1 - step for task_id, step in killed.items()}


@pytest.mark.slow
def test_task_queued_by_another_process_is_picked_up_while_running(
        tmp_path: Path, crash_store: CrashStore) -> None:
    make_project(tmp_path, tasks=0, store=crash_store)
    (tmp_path / "wakeful.yaml").write_text(
        f"name: crash-test\n{crash_store.yaml()}poll_interval_s: 0.1\n")
    query = crash_store.query
    proc = subprocess.Popen(wakeful(tmp_path, "run", "--plain"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not crash_store.has_run():
            assert time.monotonic() < deadline, "runtime never started"
            time.sleep(0.05)
        queued = subprocess.run(wakeful(tmp_path, "start-task", "steady", "job from outside"),
                                capture_output=True, text=True, timeout=30)
        assert queued.returncode == 0, queued.stderr
        deadline = time.monotonic() + 30
        while query("SELECT state FROM tasks") != [("done",)]:
            assert time.monotonic() < deadline, query("SELECT state FROM tasks")
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert query("SELECT ended_at IS NOT NULL FROM runs") == [(1,)]
