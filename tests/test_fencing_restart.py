"""A lock holder killed mid-work, resumed after a successor took its lock and wrote,
must not overwrite the successor: which task holds which token is in the store, and
its late write is checked against the live lock in the write's own transaction.

This is the reproduction from issue 11: before the fix the resumed holder's write
(without an explicit token) landed over the successor's."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

LEASE_S = 1.0


def make_project(root: Path) -> None:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "wakeful.yaml").write_text(
        "name: fencing\nworker_lease_s: 1\n"
        "startup_tasks:\n  - {agent: holder, instruction: 'hold'}\n")
    for name in ("holder", "successor"):
        (root / "agents" / f"{name}.yaml").write_text(
            f"name: {name}\nmodel: scripted:{name}\n"
            "tools: [acquire_lock, release_lock, kv_set, write_file]\n")
    # The holder locks, then takes long over its next step: it is killed there, and
    # resumed later, when it writes without presenting a token (the runtime knows it).
    (root / "scripts" / "holder.yaml").write_text(f"""\
scripts:
  - steps:
      - say: locking
        tool_calls:
          - {{tool: acquire_lock, args: {{resource: 'kv:shared', lease_s: {LEASE_S}}}}}
          - {{tool: acquire_lock, args: {{resource: 'file:shared.txt', lease_s: {LEASE_S}}}}}
      - say: writing late
        latency_ms: 2500
        tool_calls:
          - {{tool: kv_set, args: {{key: shared, value: holder}}}}
          - {{tool: write_file, args: {{path: shared.txt, content: holder}}}}
      - say: done
""")
    (root / "scripts" / "successor.yaml").write_text("""\
scripts:
  - steps:
      - say: taking over
        tool_calls:
          - {tool: acquire_lock, args: {resource: 'kv:shared', wait_s: 30}}
          - {tool: acquire_lock, args: {resource: 'file:shared.txt', wait_s: 30}}
      - say: writing
        tool_calls:
          - {tool: kv_set, args: {key: shared, value: successor}}
          - {tool: write_file, args: {path: shared.txt, content: successor}}
          - {tool: release_lock, args: {resource: 'kv:shared'}}
          - {tool: release_lock, args: {resource: 'file:shared.txt'}}
      - say: done
""")


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql).fetchall()


def wait_for(predicate: object, what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def locked_and_recorded(db: Path) -> bool:
    results = [json.loads(str(data))["role"] for (data,) in rows(
        db, "SELECT data FROM task_messages")]
    return (len(rows(db, "SELECT token FROM resource_locks")) == 2
            and results.count("tool") == 2)


@pytest.mark.slow
def test_a_resumed_holder_cannot_overwrite_its_successor(tmp_path: Path) -> None:
    make_project(tmp_path)
    db = tmp_path / "wakeful.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = [sys.executable, "-m", "wakeful", "run", "--plain", "-p", str(tmp_path)]
    first = subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Killed in its second step: both lock calls' results stored, so the resumed
        # holder does not take the locks again (an interrupted call runs again, and a
        # lock taken again after the successor let go would rightly be its own).
        wait_for(lambda: locked_and_recorded(db), "the locks, and their calls' results")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    # The successor gets the locks once the holder's leases lapse, and writes; the
    # restarted runtime resumes the holder, which then writes late.
    second = subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        subprocess.run([sys.executable, "-m", "wakeful", "start-task", "successor", "take over",
                        "-p", str(tmp_path)], env=env, check=True, capture_output=True)
        wait_for(lambda: rows(db, "SELECT COUNT(*) FROM tasks WHERE state = 'done'")
                 == [(2,)], "both tasks to finish")
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
    assert json.loads(str(rows(db, "SELECT value FROM kv_entries WHERE key = 'shared'")[0][0])
                      ) == "successor"
    assert (tmp_path / "workspace" / "shared.txt").read_text() == "successor"
    holder = rows(db, "SELECT id FROM tasks WHERE agent = 'holder'")[0][0]
    results = [json.loads(str(d))["content"] for (d,) in rows(
        db, f"SELECT data FROM task_messages WHERE task_id = '{holder}' ORDER BY seq")
        if json.loads(str(d))["role"] == "tool"]
    late = results[-2:]
    assert all("stale" in r and "refused" in r for r in late), late
    stale = rows(db, "SELECT COUNT(*) FROM events WHERE type = 'resource.stale_token'")[0][0]
    assert stale >= 2
