"""A task accepted over A2A survives a SIGKILL of the server: it is a Wakeful task in
the store, so the restarted server finishes it and the caller gets the result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from a2a.types import GetTaskRequest, SubscribeToTaskRequest, TaskState

from a2a_support import sdk_client, send_request, user_message
from interop_support import free_port
from polling import until
from web_support import TOKEN

PROJECT = """\
name: a2a-crash
default_model: scripted
"""
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


def write_project(root: Path) -> None:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    (root / "wakeful.yaml").write_text(PROJECT)
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


async def test_a2a_task_survives_sigkill(tmp_path: Path) -> None:
    root = tmp_path / "project"
    write_project(root)
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
        first.send_signal(signal.SIGKILL)
        first.wait()
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
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()


async def _collect(client: object, text: str) -> list[object]:
    from a2a.client import Client

    assert isinstance(client, Client)
    request = send_request(user_message(text), return_immediately=True)
    return [item async for item in client.send_message(request)]
