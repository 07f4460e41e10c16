"""The live stream and the server process: a real uvicorn server on 127.0.0.1 (port
0) in the test's event loop, a real WebSocket client, and `wakeful serve` as a real
subprocess stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from wakeful.observe.events import EventLog
from wakeful.server import stream as stream_module
from wakeful.server.stream import EventStream, take_batch
from web_support import ONE_TO_ONE_REPLY, TOKEN, Served, serve, team, token_interests

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory, WaitUntil


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[Served]:
    built = team(agent_def, token_delay_ms=10, latency_ms=20)
    runtime = await make_runtime(built.agents, built.models)
    server = await serve(runtime, stream_interval_s=0.1)
    try:
        yield Served(runtime, server)
    finally:
        await server.stop()


def ws_url(served: Served, token: str | None = TOKEN) -> str:
    base = served.url.replace("http://", "ws://") + "api/stream"
    return base if token is None else f"{base}?token={token}"


async def test_the_stream_refuses_a_missing_or_wrong_token(served: Served) -> None:
    for url in (ws_url(served, None), ws_url(served, "wrong-token-wrong-token")):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url):
                pass
        assert refused.value.response.status_code == 401
        assert b"missing or wrong API token" in refused.value.response.body


async def test_the_stream_sends_batches_with_tokens_coalesced_per_task(served: Served) -> None:
    async with websockets.connect(ws_url(served)) as client:
        hello = json.loads(await client.recv())
        newest = await served.runtime.store.query_events(newest=True, limit=1)
        assert hello == {"type": "hello", "run_id": served.runtime.run_id, "interval_ms": 100,
                         "last_event_id": newest[0].id if newest else 0}
        sent = await served.runtime.mailbox.send("person:ada", "writer", body="Hi!")
        seen: list[dict[str, Any]] = []
        batches = 0
        async with asyncio.timeout(10):
            while not any(e["type"] == "mail.sent" and e["data"]["in_reply_to"] == sent.id
                          for e in seen):
                message = json.loads(await client.recv())
                assert message["type"] == "events" and message["dropped"] == 0
                batches += 1
                seen.extend(message["events"])
    types = [e["type"] for e in seen]
    assert "mail.delivered" not in types and "mail.acked" not in types
    [answering] = [e for e in seen if e["type"] == "mail.answering"]
    assert answering["data"]["mail_id"] == sent.id
    task_id = answering["data"]["task_id"]
    tokens = [e for e in seen if e["type"] == "model.token"]
    assert {e["task_id"] for e in tokens} == {task_id}
    assert "".join(e["data"]["text"] for e in tokens) == ONE_TO_ONE_REPLY
    words = len(ONE_TO_ONE_REPLY.split())
    assert sum(e["data"]["count"] for e in tokens) == words
    assert len(tokens) < words, "tokens were not coalesced into batches"
    assert types.index("mail.answering") < types.index("model.token")
    assert batches < len(seen)


async def test_a_client_gets_only_the_streamed_tokens_it_asks_for(
    served: Served, wait_until: WaitUntil
) -> None:
    async with websockets.connect(ws_url(served)) as client:
        await client.recv()  # hello
        await client.send("not json")  # ignored, as is any message of another type
        await client.send(json.dumps({"type": "tokens", "agents": ["writer"], "tasks": [7]}))
        await wait_until(lambda: token_interests(served)
                         == [(False, frozenset({"writer"}), frozenset())],
                         what="the stream to take the client's tokens message")
        mailbox = served.runtime.mailbox
        asked = {(await mailbox.send("person:ada", name, body="Hi!")).id: name
                 for name in ("writer", "critic")}
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not set(asked) <= {e["data"]["in_reply_to"] for e in seen
                                     if e["type"] == "mail.sent"}:
                seen.extend(json.loads(await client.recv())["events"])
    tokens = [e for e in seen if e["type"] == "model.token"]
    assert "".join(e["data"]["text"] for e in tokens) == ONE_TO_ONE_REPLY
    assert {e["agent"] for e in tokens} == {"writer"}
    # The critic's other events still come: only its tokens were left out.
    assert {e["agent"] for e in seen if e["type"] == "mail.answering"} == {"writer", "critic"}


def test_take_batch_coalesces_tokens_and_respects_the_limit() -> None:
    log = EventLog()
    with log.subscribe() as feed:
        for word in ("a ", "b ", "c"):
            log.emit("model.token", agent="w", task_id="t1", data={"text": word})
            log.emit("model.token", agent="x", task_id="t2", data={"text": word.upper()})
        log.emit("task.state", agent="w", task_id="t1", data={"to": "done"})
        first = feed.get_nowait()
        assert first is not None
        batch = take_batch(first, feed)
        assert [(e["type"], e["task_id"]) for e in batch] == [
            ("model.token", "t1"), ("model.token", "t2"), ("task.state", "t1")]
        assert batch[0]["data"] == {"text": "a b c", "count": 3}
        assert batch[1]["data"] == {"text": "A B C", "count": 3}
        for n in range(5):
            log.emit("agent.state", agent=f"a{n}")
        first = feed.get_nowait()
        assert first is not None
        assert len(take_batch(first, feed, limit=2)) == 2
        rest = feed.get_nowait()
        assert rest is not None and rest.agent == "a2"


def test_take_batch_adds_up_tokens_coalesced_at_the_source() -> None:
    log = EventLog()
    with log.subscribe() as feed:
        for text, count in (("a b c ", 3), ("d e", 2)):
            log.publish(log.make("model.token", agent="w", task_id="t1",
                                 data={"text": text, "count": count}))
        first = feed.get_nowait()
        assert first is not None
        [entry] = take_batch(first, feed)
    assert entry["data"] == {"text": "a b c d e", "count": 5}


def _strict(constant: str) -> Any:
    raise AssertionError(f"{constant} is not JSON: a browser's JSON.parse refuses the batch")


class _Socket:
    """Collects what the stream sends; never disconnects."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text, parse_constant=_strict))

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}


async def test_a_client_that_falls_behind_is_told_how_much_it_missed(
    monkeypatch: pytest.MonkeyPatch, wait_until: WaitUntil
) -> None:
    monkeypatch.setattr(stream_module, "QUEUE_SIZE", 10)
    log = EventLog()
    socket = _Socket()
    streamer = EventStream(log, socket, interval_s=0.01)  # type: ignore[arg-type]
    for n in range(100):
        log.emit("agent.state", agent=f"a{n}")
    runner = asyncio.create_task(streamer.run())
    try:
        await wait_until(lambda: socket.sent, what="a batch")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert socket.sent[0]["dropped"] == 90
    assert [e["agent"] for e in socket.sent[0]["events"]] == [f"a{n}" for n in range(90, 100)]
    assert not log.listened, "the subscription outlived its stream"


async def test_a_batch_is_strict_json_whatever_the_events_hold(wait_until: WaitUntil) -> None:
    log = EventLog()
    socket = _Socket()
    streamer = EventStream(log, socket, interval_s=0.01)  # type: ignore[arg-type]
    log.emit("tool.call", agent="w", task_id="t1",
             data={"result": float("nan"), "when": {3}, "text": "naïve ☃"})
    runner = asyncio.create_task(streamer.run())
    try:
        await wait_until(lambda: socket.sent, what="a batch")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    [event] = socket.sent[0]["events"]
    assert event["data"] == {"result": None, "when": "{3}", "text": "naïve ☃"}


async def test_stopping_the_server_closes_live_streams_and_leaves_the_runtime_running(
    served: Served
) -> None:
    subscribers = len(served.runtime.events._subscribers)
    async with websockets.connect(ws_url(served)) as client:
        await client.recv()
        assert len(served.runtime.events._subscribers) == subscribers + 1
        await served.server.stop()
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await client.recv()
    assert len(served.runtime.events._subscribers) == subscribers
    record = await served.runtime.create_task("critic", "after the server stopped")
    assert (await served.runtime.wait_task(record.id, 10)).state.value == "done"


# the command line ------------------------------------------------------------------
def _start(project: Path, *args: str) -> subprocess.Popen[str]:
    """Output goes to a file: a pipe nobody drains would fill up and block the server."""
    log = (project / f"serve-{time.monotonic_ns()}.log").open("w+")
    process = subprocess.Popen([sys.executable, "-m", "wakeful", *args, "-p", str(project)],
                               stdout=log, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    process.log = log  # type: ignore[attr-defined]
    return process


def _output(process: subprocess.Popen[str]) -> str:
    log = process.log  # type: ignore[attr-defined]
    log.seek(0)
    text: str = log.read()
    return text


def _read_url(process: subprocess.Popen[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"Web UI: (http://\S+)", _output(process))
        if found:
            return found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no URL printed: {_output(process)}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    from wakeful.cli.main import copy_example

    folder = tmp_path / "team"
    copy_example(folder)
    return folder


def test_wakeful_serve_makes_a_token_once_serves_the_api_and_stops_on_sigterm(
    project: Path
) -> None:
    process = _start(project, "serve", "--port", "0")
    try:
        url = _read_url(process)
        token_file = project / ".wakeful" / "token"
        token = token_file.read_text().strip()
        assert url.endswith(f"/#token={token}") and len(token) >= 32
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        base = url.split("#")[0]
        assert httpx.get(base + "api/agents").status_code == 401
        agents = httpx.get(base + "api/agents", headers={"Authorization": f"Bearer {token}"})
        assert sorted(a["name"] for a in agents.json()["agents"]) == [
            "coordinator", "monitor", "researcher", "writer"]
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        out = _output(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        process.log.close()  # type: ignore[attr-defined]
    assert process.returncode == 0, err
    assert "Tasks:" in out

    again = _start(project, "serve", "--port", "0")
    try:
        url = _read_url(again)
        assert "#token=" not in url, "the token is printed only when it is made"
        again.send_signal(signal.SIGINT)
        _, err = again.communicate(timeout=30)
    finally:
        if again.poll() is None:
            again.kill()
            again.communicate()
        again.log.close()  # type: ignore[attr-defined]
    assert again.returncode == 0, err
    assert token_file.read_text().strip() == token


def test_serving_beyond_loopback_needs_a_token(project: Path) -> None:
    refused = subprocess.run([sys.executable, "-m", "wakeful", "serve", "-p", str(project),
                              "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "refusing to serve on 0.0.0.0" in refused.stderr and "--token" in refused.stderr
    assert not (project / ".wakeful").exists()
    short = subprocess.run([sys.executable, "-m", "wakeful", "serve", "-p", str(project),
                            "--host", "0.0.0.0", "--token", "short"], capture_output=True,
                           text=True, timeout=60)
    assert short.returncode == 1 and "at least 16" in short.stderr


def test_run_with_ui_until_idle_serves_while_the_team_works(project: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "wakeful", "run", "-p", str(project), "--ui",
                           "--port", "0", "--until-idle", "--plain"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert re.search(r"Web UI: http://127\.0\.0\.1:\d+/#token=", done.stdout)
    assert "Tasks: 10 done" in done.stdout


async def test_the_example_team_answers_a_person_in_its_team_channel(
    project: Path, wait_until: WaitUntil
) -> None:
    from wakeful.project.loader import load_project
    from wakeful.runtime.runtime import Runtime

    runtime = Runtime.from_project(load_project(project))
    await runtime.start()
    server = await serve(runtime)
    try:
        async with httpx.AsyncClient(base_url=server.url,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            channels = (await client.get("/api/channels")).json()["channels"]
            assert sorted(c["name"] for c in channels) == ["alerts", "team"]
            posted = await client.post("/api/channels/team/posts",
                                       json={"sender": "operator", "body": "Hello, team!"})
            assert posted.status_code == 201, posted.text

            async def answers() -> set[str]:
                posts = (await client.get("/api/channels/team/posts")).json()["posts"]
                return {p["sender"] for p in posts if p["payload"]}

            await wait_until(lambda: _has_all(answers()), within=30,
                             what="an answer from each agent")
            one = await client.post("/api/mail", json={"to": "writer", "body": "Hi"})
            assert one.status_code == 201
    finally:
        await server.stop()
        await runtime.stop()


async def _has_all(found: Any) -> bool:
    return await found == {"coordinator", "researcher", "writer", "monitor"}


async def test_a_taken_port_is_a_clear_error(served: Served) -> None:
    from wakeful.errors import WakefulError
    from wakeful.server import WebServer

    second = WebServer(served.runtime, TOKEN, port=served.server.port)
    with pytest.raises(WakefulError, match=rf"cannot serve the web UI on 127\.0\.0\.1:"
                                           rf"{served.server.port}: .*--port 0"):
        await second.start()
    await second.stop()  # nothing started: nothing to stop
    async with httpx.AsyncClient(base_url=served.url, headers=served.headers) as client:
        assert (await client.get("/api/status")).status_code == 200
