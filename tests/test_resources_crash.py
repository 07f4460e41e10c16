"""Locks live in the store: a holder killed with SIGKILL loses its lock when its lease
runs out, another process then gets it with a larger fencing token, and ``wakeful
locks`` shows all of it from a third process. The crash runs on each backend."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crash_store import CrashStore, crash_store
from resources_support import call, context, ok, open_runtime
from wakeful.store import open_store

__all__ = ["crash_store"]

LEASE_S = 20.0  # long enough for a busy machine to look (a CLI run too) before it lapses


def make_project(root: Path, store: CrashStore) -> None:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "wakeful.yaml").write_text(
        f"name: crash-locks\n{store.yaml()}startup_tasks:\n"
        "  - {agent: holder, instruction: 'rewrite the report'}\n")
    (root / "agents" / "holder.yaml").write_text(
        "name: holder\nmodel: scripted:holder\ntools: [acquire_lock, write_file]\n")
    (root / "scripts" / "holder.yaml").write_text(f"""\
scripts:
  - steps:
      - say: locking the report
        tool_calls:
          - {{tool: acquire_lock, args: {{resource: 'file:report.md', lease_s: {LEASE_S}}}}}
      - say: a very long piece of work
        latency_ms: 120000
""")


def wakeful(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "wakeful", *args, "-p", str(root)]


def locks_cli(root: Path) -> str:
    done = subprocess.run(wakeful(root, "locks"), capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
async def test_a_killed_holders_lease_lapses_and_the_next_holder_gets_a_larger_token(
        tmp_path: Path, crash_store: CrashStore) -> None:
    make_project(tmp_path, crash_store)
    db = crash_store
    holder = await asyncio.create_subprocess_exec(
        *wakeful(tmp_path, "run", "--plain"), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        rows: list[tuple[object, ...]] = []
        while not rows:
            assert time.monotonic() < deadline, "the holder never took its lock"
            assert holder.returncode is None, "the holder exited early"
            await asyncio.sleep(0.05)
            if db.has_run():  # (before, the schema may not exist yet)
                rows = db.query("SELECT token, pid, holder_task FROM resource_locks")
        os.kill(holder.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await asyncio.wait_for(holder.wait(), 10)
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    assert holder.returncode == -signal.SIGKILL
    [(old_token, old_pid, old_task)] = rows
    assert old_pid == holder.pid

    # Another process (this one) sees the dead holder's lock, and waits for its lease.
    store = open_store(db.url or tmp_path / "wakeful.db")
    async with open_runtime(tmp_path, store=store) as runtime:
        ctx = context(runtime, "t_successor", "successor")
        tried = await ok(runtime, ctx, "acquire_lock", resource="file:report.md")
        assert time.monotonic() - killed_at < LEASE_S, "too slow to see the lock held"
        assert tried["acquired"] is False
        assert f"task {old_task} (agent holder)" in tried["blocked_by"][0]
        listing = await asyncio.to_thread(locks_cli, tmp_path)
        assert "file:report.md" in listing and str(old_pid) in listing and "left" in listing
        got = await ok(runtime, ctx, "acquire_lock", resource="file:report.md", wait_s=30)
        waited = time.monotonic() - killed_at
        assert got["acquired"] and got["token"] > old_token
        assert waited > LEASE_S * 0.9  # freed by the lease running out, not before
        await ok(runtime, ctx, "write_file", path="report.md", content="done by the successor",
                 fencing_token=got["token"])
        # a write of the dead holder's, arriving late with its token, is refused
        late = await call(runtime, context(runtime, old_task, "holder"), "write_file",
                          path="report.md", content="stale", fencing_token=old_token)
        assert not late.ok and f"fencing token {old_token} is stale" in late.content
        assert (tmp_path / "workspace" / "report.md").read_text() == "done by the successor"
        await runtime.store.flush()
        listing = await asyncio.to_thread(locks_cli, tmp_path)
        assert "t_successor" in listing and str(os.getpid()) in listing
        assert f"Last fencing token granted: {got['token']}." in listing
    [(task_id, data)] = db.query("SELECT task_id, data FROM events "
                                 "WHERE type = 'resource.lock_expired'")
    expired = json.loads(data)
    assert (expired["token"], task_id, expired["pid"]) == (old_token, old_task, old_pid)


async def test_wakeful_locks_shows_holders_waiters_and_tokens(tmp_path: Path) -> None:
    (tmp_path / "wakeful.yaml").write_text("name: p\n")
    async with open_runtime(tmp_path) as runtime:
        assert "No locks held." in locks_cli(tmp_path)
        a, b = context(runtime, "t_a", "alice"), context(runtime, "t_b", "bob")
        await ok(runtime, a, "acquire_lock", resource="kv:plan", lease_s=120)
        await ok(runtime, a, "acquire_lock", resource="file:docs", mode="read")
        waiting = asyncio.create_task(ok(runtime, b, "kv_set", key="plan", value=1))
        deadline = time.monotonic() + 10
        while not (await runtime.resources.view()).waiters:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        listing = await asyncio.to_thread(locks_cli, tmp_path)
        for expected in ("kv:plan", "file:docs", "alice", "t_a", "read", "write",
                         "Waiting (1, first in line first)", "auto-pause", "t_b", "bob",
                         "Last fencing token granted: 2."):
            assert expected in listing, (expected, listing)
        await ok(runtime, a, "release_lock", resource="kv:plan")
        await waiting
        listing = await asyncio.to_thread(locks_cli, tmp_path)
        assert "kv:plan" not in listing and "Nobody is waiting." in listing
