"""A task accepted over A2A survives a SIGKILL of the server: it is a Wakeful task in
the store, so the restarted server finishes it and the caller gets the result. On each
backend; the kill lands at a random point of the task's progress (just accepted, or
while its model call runs), and the store shows it done once: one task, one answer."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from a2a.types import GetTaskRequest, Role, SubscribeToTaskRequest, TaskState

from a2a_support import sdk_client, send_request, user_message
from crash_store import CrashStore, crash_store
from interop_support import free_port
from polling import until
from web_support import TOKEN

__all__ = ["crash_store"]

PROJECT = """\
name: a2a-crash
default_model: scripted
worker_lease_s: 2
"""  # (a dead worker's tasks are taken over once its lease lapses)
AGENT = """\
name: slowpoke
role: answers slowly
model: scripted:slowpoke
"""
SCRIPT = """\
scripts:
  - steps:
      - say: "Answer: forty-two"
        latency_ms: 1500
"""


def write_project(root: Path, store: CrashStore) -> None:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "wakeful.yaml").write_text(PROJECT + store.yaml())
    (root / "agents" / "slowpoke.yaml").write_text(AGENT)
    (root / "scripts" / "slowpoke.yaml").write_text(SCRIPT)


def start_server(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "wakeful", "serve", "-p", str(root), "--port", str(port),
         "--token", TOKEN, "--plain"], stdout=handle, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    async def up() -> bool:
        assert process.poll() is None, "the server exited"
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{url}a2a")).status_code == 200
        except httpx.HTTPError:
            return False

    await until(up, within=60, what="the server to serve /a2a")


@pytest.mark.slow
async def test_a2a_task_survives_sigkill(tmp_path: Path, crash_store: CrashStore) -> None:
    seed = random.randrange(1_000_000)
    kill_when = random.Random(seed).choice(["accepted", "mid-step"])
    print(f"\n[{crash_store.backend}] seed {seed}: kill when {kill_when}")
    root, store = tmp_path, crash_store  # the project's root is the store's (SQLite)
    write_project(root, store)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "server.log"
    first = start_server(root, port, log)
    try:
        await wait_up(url, first)
        async with sdk_client(url, "slowpoke", streaming=False) as client:
            [sent] = await _collect(client, "the meaning of life")
            task_id = sent.task.id
            assert sent.task.status.state in (TaskState.TASK_STATE_SUBMITTED,
                                              TaskState.TASK_STATE_WORKING)
        state = f"SELECT state FROM tasks WHERE id = '{task_id}'"
        if kill_when == "mid-step":  # claimed, its (1.5 s) model call under way
            await until(lambda: store.query(state) == [("running",)], within=20,
                        what="the task to run")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert store.query(state) in ([("queued",)], [("running",)])  # killed unfinished
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    second = start_server(root, port, log)
    try:
        await wait_up(url, second)
        async with sdk_client(url, "slowpoke") as client:
            task = await client.get_task(GetTaskRequest(id=task_id))
            if task.status.state != TaskState.TASK_STATE_COMPLETED:
                async for _ in client.subscribe(SubscribeToTaskRequest(id=task_id)):
                    pass
                task = await client.get_task(GetTaskRequest(id=task_id))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED, log.read_text()[-3000:]
        assert task.artifacts[0].parts[0].text == "Answer: forty-two"
        assert task.history[0].parts[0].text == "the meaning of life"
        assert [m.role for m in task.history].count(Role.ROLE_USER) == 1
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
    check_history(store, task_id)  # once the server has stopped (its writes flushed)


def check_history(store: CrashStore, task_id: str) -> None:
    """Nothing lost, nothing twice: one Wakeful task and one A2A row for the request,
    done, whose conversation holds the question once and the answer once."""
    assert store.query("SELECT id, state, result FROM tasks") == [
        (task_id, "done", "Answer: forty-two")]
    assert store.query("SELECT task_id FROM a2a_tasks") == [(task_id,)]
    said = [json.loads(d) for (d,) in store.query(
        f"SELECT data FROM task_messages WHERE task_id = '{task_id}' ORDER BY seq")]
    assert [m["role"] for m in said].count("user") == 1
    assert [m["content"] for m in said if m["role"] == "assistant"] == ["Answer: forty-two"]
    ends = [json.loads(d)["to"] for (d,) in store.query(
        f"SELECT data FROM events WHERE type = 'task.state' AND task_id = '{task_id}'")]
    assert ends.count("done") == 1


async def _collect(client: object, text: str) -> list[object]:
    from a2a.client import Client

    assert isinstance(client, Client)
    request = send_request(user_message(text), return_immediately=True)
    return [item async for item in client.send_message(request)]
