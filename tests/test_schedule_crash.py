"""A real ``wakeful run`` killed with SIGKILL while timers are due, then started again.

Three agents have the same one-second schedule with different misfire policies, and a
task sleeps eight seconds. The process is killed a couple of seconds in, stays down
for several due times, and is started again. From the store afterwards:

* ``once`` fired one run for everything it missed, ``skip`` fired none of the missed
  runs, ``all`` fired every one of them: its due times form an unbroken grid;
* no due time of any timer fired twice, and each firing started exactly its task
  (firing, task and event are one transaction);
* the sleeping task, resumed by the second process, slept only what was left of its
  eight seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from crash_store import CrashStore, crash_store

__all__ = ["crash_store"]

NAP_S = 8.0
POLICIES = ("once", "skip", "all")


def make_project(root: Path, store: CrashStore) -> None:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "wakeful.yaml").write_text(
        f"name: misfire-test\n{store.yaml()}"
        "startup_tasks:\n  - {agent: napper, instruction: nap}\n")
    for policy in POLICIES:
        (root / "agents" / f"{policy}.yaml").write_text(
            f"name: {policy}\nmodel: scripted:quick\nschedule:\n"
            f"  - {{every: 1s, misfire: {policy}, instruction: tick}}\n")
    (root / "agents" / "napper.yaml").write_text(
        "name: napper\nmodel: scripted:napper\ntools: [sleep_for]\n")
    (root / "scripts" / "quick.yaml").write_text("scripts:\n  - steps:\n      - say: tock\n")
    (root / "scripts" / "napper.yaml").write_text(
        "scripts:\n  - steps:\n"
        f"      - tool_calls: [{{tool: sleep_for, args: {{duration: '{NAP_S}s'}}}}]\n"
        "      - say: '{last_tool_result}'\n")


def ticks(store: CrashStore) -> dict[str, int]:
    if not store.has_run():
        return {}
    rows = store.query("SELECT agent, COUNT(*) FROM tasks WHERE created_by = 'schedule' "
                       "GROUP BY agent")
    return {str(a): int(str(n)) for a, n in rows}


def wait_for(predicate: object, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_misfire_policies_and_a_resumed_sleep_across_sigkill(
        tmp_path: Path, crash_store: CrashStore) -> None:
    make_project(tmp_path, crash_store)
    query = crash_store.query
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "wakeful", "run", "--plain", "-p", str(tmp_path)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        wait_for(lambda: all(ticks(crash_store).get(p, 0) >= 2 for p in POLICIES), "two ticks each")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.time()
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    assert query("SELECT state FROM tasks WHERE agent = 'napper'") == [("waiting",)]
    time.sleep(3.5)  # several due times pass while nothing runs
    second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_for(lambda: query("SELECT state FROM tasks WHERE agent = 'napper'")
                 == [("done",)], "the nap to end", within=30)
        time.sleep(1.2)  # a tick or two after the restart
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0, second.stderr.read() if second.stderr else ""
    finally:
        if second.poll() is None:
            second.kill()

    runs = query("SELECT id, started_at FROM runs ORDER BY started_at")
    assert len(runs) == 2
    second_run, restarted_at = str(runs[1][0]), float(str(runs[1][1]))
    timers = dict(query("SELECT agent, id FROM timers WHERE action = 'start_task'"))
    fired = [(run, json.loads(str(data))) for run, data in query(
        "SELECT run_id, data FROM events WHERE type IN ('timer.fired', 'timer.skipped') "
        "ORDER BY id")]
    for policy in POLICIES:
        timer = timers[policy]
        events = [(run, data) for run, data in fired if data.get("timer_id") == timer]
        dues = [epoch(d) for _, data in events for d in data["dues"]]
        assert len(dues) == len(set(dues)), f"{policy}: a due time fired twice"
        tasks = query(f"SELECT COUNT(*) FROM tasks WHERE cause_id = '{timer}'")[0][0]
        assert tasks == len(dues), f"{policy}: firings and tasks disagree"
        # What the second run found due on start: everything missed while it was down.
        late = [data for run, data in events if run == second_run and data["late_ms"] > 1000]
        assert len(late) == 1, (policy, late)
        caught_up = late[0]
        missed_while_down = [d for d in dues if killed_at < d < restarted_at]
        if policy == "once":
            assert caught_up["runs"] == 1 and caught_up["missed"] >= 2
        elif policy == "skip":
            assert caught_up["runs"] == 0 and caught_up["missed"] >= 3
            assert missed_while_down == []
        else:
            assert caught_up["runs"] >= 3 and caught_up["missed"] == 0
            # An unbroken grid from the first due time to the last: nothing lost.
            assert dues == [dues[0] + k for k in range(len(dues))]
    # The nap: due where the first process put it, woken by the second, which slept only
    # the rest; its wait row went when the task finished.
    assert query("SELECT COUNT(*) FROM timers WHERE action = 'wake_task'") == [(0,)]
    first_started = float(str(runs[0][1]))
    [(result,)] = query("SELECT result FROM tasks WHERE agent = 'napper'")
    wake = json.loads(str(result))
    # Due where the first process put it (its sleep began before the kill: a nap started
    # over by the second process would be due NAP_S after the restart), woken by the
    # second process, whether it came due before that process started or after.
    assert wake["woke"] == "timer" and wake["slept_s"] >= NAP_S
    assert first_started < epoch(wake["due"]) - NAP_S < killed_at
    assert epoch(wake["at"]) > restarted_at
    woke = [(run, json.loads(str(data))["late_ms"]) for run, data in query(
        "SELECT run_id, data FROM events WHERE type = 'task.woke'")]
    assert [w[0] for w in woke] == [second_run] and float(woke[0][1]) >= 0
