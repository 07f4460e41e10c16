"""An approval pending across a real SIGKILL of ``wakeful run``, decided from the CLI
(another process) after the restart, and applied exactly once.

The first process asks, and is killed while the task waits. The second resumes the
task, which finds its approval (it does not ask again). Then ``wakeful approve`` and
``wakeful deny`` race from two more processes: one wins, the other is told it lost;
the waiting runtime finds the decision in the store and the call runs once.
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

AGENT = """name: writer
model: scripted:writer
answer_mail: false
tools: [write_file]
approval:
  - tools: [write_file]
    when: {path: "docs/**"}
    approvers: [person:ada]
"""
SCRIPT = """scripts:
  - steps:
      - tool_calls: [{tool: write_file, args: {path: docs/plan.md, content: the plan}}]
      - say: "result: {last_tool_result}"
"""


def make_project(root: Path, store: CrashStore) -> None:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "wakeful.yaml").write_text(
        f"name: approvals-crash\n{store.yaml()}poll_interval_s: 0.1\nworker_lease_s: 2\n"
        "startup_tasks:\n  - {agent: writer, instruction: write the plan}\n")
    (root / "agents" / "writer.yaml").write_text(AGENT)
    (root / "scripts" / "writer.yaml").write_text(SCRIPT)


def query(store: CrashStore, sql: str) -> list[tuple[object, ...]]:
    return store.query(sql) if store.has_run() else []  # not created yet


def wait_for(predicate: object, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def waiting(db: CrashStore) -> bool:
    return (query(db, "SELECT state FROM tasks") == [("waiting",)]
            and len(query(db, "SELECT id FROM approvals WHERE state = 'pending'")) == 1)


@pytest.mark.slow
def test_an_approval_survives_sigkill_and_is_decided_once_after_restart(
        tmp_path: Path, crash_store: CrashStore) -> None:
    make_project(tmp_path, crash_store)
    db = crash_store
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    wakeful = [sys.executable, "-m", "wakeful"]
    run = [*wakeful, "run", "--plain", "-p", str(tmp_path)]
    first = subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: waiting(db), "the first process to ask")
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    [(approval_id,)] = query(db, "SELECT id FROM approvals WHERE state = 'pending'")
    listed = subprocess.run([*wakeful, "approvals", "-p", str(tmp_path)],
                            env={**env, "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and str(approval_id) in listed.stdout
    assert "write_file(docs/plan.md)" in listed.stdout

    second = subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        # resumed: waiting again, for the same approval
        wait_for(lambda: query(db, "SELECT COUNT(*) FROM runs") == [(2,)] and waiting(db),
                 "the second process to resume the wait")
        wait_for(lambda: query(db, "SELECT COUNT(*) FROM events WHERE type = 'task.resumed'")
                 == [(1,)], "the task to resume")
        assert not (tmp_path / "workspace" / "docs" / "plan.md").exists()
        deciders = [
            subprocess.Popen([*wakeful, "approve", str(approval_id), "--as", "person:ada",
                              "-p", str(tmp_path)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True),
            subprocess.Popen([*wakeful, "deny", str(approval_id), "--reason", "no",
                              "--as", "person:ada", "-p", str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
        results = [(p.wait(timeout=60), *p.communicate()) for p in deciders]
        won = [r for r in results if r[0] == 0]
        lost = [r for r in results if r[0] != 0]
        assert len(won) == 1 and len(lost) == 1, results
        assert "was already" in lost[0][2]
        wait_for(lambda: query(db, "SELECT state FROM tasks") == [("done",)],
                 "the task to go on and finish")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0, second.stderr.read() if second.stderr else ""
    finally:
        if second.poll() is None:
            second.kill()
    [(state, decided_by)] = query(db, "SELECT state, decided_by FROM approvals")
    assert decided_by == "person:ada"
    assert query(db, "SELECT COUNT(*) FROM approvals") == [(1,)]
    assert query(db, "SELECT COUNT(*) FROM events WHERE type = 'approval.requested'") \
        == [(1,)]
    assert query(db, "SELECT COUNT(*) FROM events WHERE type = 'approval.decided'") \
        == [(1,)]
    written = tmp_path / "workspace" / "docs" / "plan.md"
    [(result,)] = query(db, "SELECT result FROM tasks")
    if state == "approved":
        assert written.read_text() == "the plan"
        calls = [json.loads(str(data))["tool"] for (data,) in query(
            db, "SELECT data FROM events WHERE type = 'tool.call'")]
        assert calls.count("write_file") == 1
    else:
        assert not written.exists() and "Reason: no" in str(result)
