"""What the runs on a real local model found, each fixed and held here.

A refused or dropped connection is named for what it is (the SDKs' aiohttp transport
reports both as a timeout), and a dropped kept-alive connection is retried once at
once without counting against ``max_retries``; ``model.call`` separates the model's
own latency from waiting for a slot and from retries; an answer cut off by
``max_tokens`` is marked; further request parameters reach the server; tools work for
a model without tool calling (``json_schema`` mode); a person's mail reaches the model
as their own words.

The servers are real sockets on loopback: :class:`wakeful.testing.ModelServer` for
HTTP behaviour, and a few lines of raw asyncio where a server must misbehave below
HTTP (close a kept-alive connection, refuse connections).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from wakeful import AgentDefinition, Runtime, SQLiteStore, TaskState
from wakeful.core.records import Event
from wakeful.models.base import Message, ToolSpec
from wakeful.models.calls import reporting_to
from wakeful.models.config import ProviderConfig
from wakeful.models.registry import ModelRegistry, make_provider
from wakeful.models.remote import ProviderError
from wakeful.testing import ModelServer, Reply

HELLO = [Message(role="user", content="hello")]
COMPLETION = json.dumps({
    "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "hi there"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class KeepAliveDropper:
    """Answers the first request on each connection and keeps it alive, then closes
    the connection when a second request arrives on it, without answering: what a
    server does when it times out an idle kept-alive connection just as the client
    reuses it. ``always_drop`` closes every connection at its first request."""

    def __init__(self, *, always_drop: bool = False) -> None:
        self.always_drop = always_drop
        self.requests = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.requests += 1
                if served or self.always_drop:
                    self.dropped += 1
                    return
                served += 1
                close = b"connection: close" in head.lower()  # honoured, as servers do
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"connection: " + (b"close" if close else b"keep-alive")
                             + b"\r\ncontent-length: " + str(len(COMPLETION)).encode()
                             + b"\r\n\r\n" + COMPLETION)
                await writer.drain()
                if close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def config(base_url: str, **settings: Any) -> ProviderConfig:
    return ProviderConfig(base_url=base_url, api_key_required=False, stream=False,
                          backoff_initial_s=0, **settings)


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_a_refused_connection_is_reported_as_refused(http_client: str) -> None:
    provider = make_provider("local", config(f"http://127.0.0.1:{free_port()}/v1",
                                             max_retries=0, http_client=http_client))
    try:
        with pytest.raises(ProviderError) as failed:
            await provider.model("m").complete(HELLO, [])
    finally:
        await provider.aclose()
    message = str(failed.value)
    assert "connection refused" in message and "is the server running?" in message
    assert "timeout" not in message and "no response within" not in message


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_a_dropped_keep_alive_connection_is_retried_at_once_for_free(
        http_client: str) -> None:
    reported: list[tuple[str, dict[str, Any]]] = []
    async with KeepAliveDropper() as base_url:
        provider = make_provider("local", config(base_url, max_retries=0,
                                                 http_client=http_client))
        try:
            model = provider.model("m")
            first = await model.complete(HELLO, [])  # opens a connection, keeps it alive
            with reporting_to(lambda kind, data: reported.append((kind, data))):
                second = await model.complete(HELLO, [])  # reuses it: dropped, retried
        finally:
            await provider.aclose()
    assert first.message.content == second.message.content == "hi there"
    assert first.call_info["attempts"] == 1
    assert second.call_info["attempts"] == 2  # with max_retries: 0
    [(kind, retry)] = reported
    assert kind == "model.retry" and retry["counted"] is False and retry["delay_s"] == 0
    assert "closed the connection without answering" in retry["error"]


async def test_a_connection_dropped_again_fails_naming_the_drop() -> None:
    async with KeepAliveDropper(always_drop=True) as base_url:
        provider = make_provider("local", config(base_url, max_retries=1))
        try:
            with pytest.raises(ProviderError) as failed:
                await provider.model("m").complete(HELLO, [])
        finally:
            await provider.aclose()
    message = str(failed.value)
    assert "closed the connection without answering" in message
    assert "no response within" not in message
    # One free retry plus one counted retry: three requests, and the error says so.
    assert failed.value.attempts == 3 and "gave up after 3 attempts" in message


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer() as running:
        yield running


@pytest.fixture
async def runtime_on(tmp_path: Path, server: ModelServer) -> AsyncIterator[Any]:
    started: list[Runtime] = []

    async def make(*agents: AgentDefinition, **settings: Any) -> Runtime:
        provider = ProviderConfig(base_url=server.base_url, api_key_required=False,
                                  backoff_initial_s=0, **settings)
        runtime = Runtime(store=SQLiteStore(tmp_path / "wakeful.db"),
                          models=ModelRegistry(tmp_path, providers={"local": provider}),
                          agents=agents)
        await runtime.start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        await runtime.stop()


async def events_of(runtime: Runtime, *types: str) -> list[Event]:
    await runtime.store.flush()
    return await runtime.store.query_events(types=types)


async def test_model_call_separates_queueing_and_retries_from_the_models_latency(
        runtime_on: Any, server: ModelServer) -> None:
    server.latency_s = 0.2
    server.script(Reply(status=500), Reply(text="first"), Reply(text="second"))
    runtime = await runtime_on(AgentDefinition(name="a", model="local:m"),
                               concurrency=1, max_retries=2)
    tasks = [await runtime.create_task("a", f"question {n}") for n in range(2)]
    done = [await runtime.wait_task(t.id, timeout=30) for t in tasks]
    assert all(t.state is TaskState.DONE for t in done)
    calls = sorted((e.data for e in await events_of(runtime, "model.call")),
                   key=lambda d: d["attempts"])
    assert all(c["configured_model"] == "local:m" for c in calls)
    waited, retried = calls
    # One call waited for the other's slot (queued), the other needed two attempts.
    assert retried["attempts"] == 2 and waited["attempts"] == 1
    assert waited["queued_ms"] >= 150 or retried["queued_ms"] >= 150
    for call in calls:
        assert call["latency_ms"] >= 150  # the server's own 0.2 s
        assert call["total_ms"] >= call["latency_ms"] + call["queued_ms"] - 1
    assert retried["total_ms"] >= 2 * 150  # both attempts, apart from latency_ms


async def test_an_answer_cut_off_by_max_tokens_is_marked(runtime_on: Any,
                                                         server: ModelServer) -> None:
    server.script(Reply(text="The first half of a long", finish_reason="length"))
    runtime = await runtime_on(AgentDefinition(name="w", model="local:m"),
                               max_output_tokens=8)
    await runtime.mailbox.send("person:ann", "w", "", "Tell me everything.")
    await runtime.wait_idle(30)
    [task] = await runtime.store.list_tasks()
    assert task.state is TaskState.DONE and task.truncated is True  # on the task row too
    from wakeful.server.views import task_view

    assert task_view(task)["truncated"] is True  # what the UI's task page marks
    [call] = await events_of(runtime, "model.call")
    assert call.data["truncated"] is True and call.data["finish_reason"] == "length"
    done = [e for e in await events_of(runtime, "task.state") if e.data["to"] == "done"]
    assert done[0].data["truncated"] is True
    [answer] = [m for m in await runtime.mailbox.conversation("person:ann", "w")
                if m.sender == "w"]
    assert answer.payload["truncated"] is True
    assert answer.body.startswith("The first half of a long")
    assert "cut off" in answer.body and "max_output_tokens" in answer.body


async def test_further_request_parameters_reach_the_server(server: ModelServer) -> None:
    provider = make_provider("local", config(
        server.base_url, frequency_penalty=0.5, presence_penalty=-0.25, stop=["\n\n"],
        seed=42, top_p=0.9, temperature=0.1,
        extra_body={"repeat_penalty": 1.1, "model": "not-this-one"}))
    try:
        await provider.model("m").complete(HELLO, [])
    finally:
        await provider.aclose()
    [received] = server.calls()
    body = received.body
    assert body["frequency_penalty"] == 0.5 and body["presence_penalty"] == -0.25
    assert body["stop"] == ["\n\n"] and body["seed"] == 42 and body["top_p"] == 0.9
    assert body["repeat_penalty"] == 1.1  # a server-specific field, passed as is
    assert body["model"] == "m"  # Wakeful's own fields win over extra_body


NOTE = ToolSpec("note", "Write a note.", {"type": "object", "properties": {
    "text": {"type": "string"}}, "required": ["text"]})


async def test_json_schema_mode_turns_a_json_reply_into_a_tool_call(
        server: ModelServer) -> None:
    server.script(Reply(text='{"tool": "note", "arguments": {"text": "hi"}}'),
                  Reply(text='{"final_answer": "noted it"}'))
    provider = make_provider("local", config(server.base_url, tool_calls="json_schema"))
    model = provider.model("m")
    try:
        step = await model.complete(HELLO, [NOTE])
        [call] = step.message.tool_calls
        assert (call.name, json.loads(call.arguments)) == ("note", {"text": "hi"})
        assert step.finish_reason == "tool_calls"
        history = [*HELLO, step.message,
                   Message(role="tool", content="noted", tool_call_id=call.id, name="note")]
        final = await model.complete(history, [NOTE])
    finally:
        await provider.aclose()
    assert final.message.content == "noted it" and not final.message.tool_calls
    first, second = (r.body for r in server.calls())
    assert "tools" not in first
    schema = first["response_format"]["json_schema"]["schema"]
    assert [c["properties"].get("tool") for c in schema["anyOf"]] == [{"const": "note"}, None]
    # The history is plain turns a template without tool calling accepts.
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert json.loads(second["messages"][2]["content"])["tool"] == "note"
    assert second["messages"][3]["content"].startswith("note returned: noted")


async def test_json_schema_mode_asks_only_for_an_answer_after_max_tool_rounds(
        server: ModelServer) -> None:
    provider = make_provider("local", config(server.base_url, tool_calls="json_schema",
                                             max_tool_rounds=1))
    model = provider.model("m")
    server.script(Reply(text='{"tool": "note", "arguments": {"text": "x"}}'))
    try:
        step = await model.complete(HELLO, [NOTE])
        [call] = step.message.tool_calls
        history = [*HELLO, step.message,
                   Message(role="tool", content="ok", tool_call_id=call.id, name="note")]
        await model.complete(history, [NOTE])
    finally:
        await provider.aclose()
    schema = server.calls()[-1].body["response_format"]["json_schema"]["schema"]
    assert schema == {"anyOf": [{"type": "object", "properties": {
        "final_answer": {"type": "string"}}, "required": ["final_answer"],
        "additionalProperties": False}]}


async def test_a_persons_mail_reaches_the_model_as_their_own_words(
        runtime_on: Any, server: ModelServer) -> None:
    runtime = await runtime_on(AgentDefinition(name="w", model="local:m", role="a writer"))
    await runtime.mailbox.send("person:operator", "w", "", "What rhymes with orange?")
    await runtime.wait_idle(30)
    [received] = server.calls()
    system, user = received.body["messages"]
    assert user == {"role": "user", "content": "What rhymes with orange?"}
    assert system["content"].startswith("You are w, a writer.")
    assert "person:operator" in system["content"] and "sent back" in system["content"]


def test_json_schema_mode_keeps_tool_schemas_with_definitions_resolvable() -> None:
    """``$ref`` paths are relative to the root, and a tool's schema is nested in the
    reply schema: its ``$defs`` move to the root (renamed when two tools clash)."""
    from wakeful.models.json_tools import reply_schema

    def spec(name: str, states: list[str]) -> ToolSpec:
        return ToolSpec(name, "", {"type": "object", "$defs": {"State": {"enum": states}},
                                   "properties": {"state": {"$ref": "#/$defs/State"}}})

    schema = reply_schema([spec("a", ["x"]), spec("b", ["y"])])
    first, second, _final = schema["anyOf"]
    assert first["properties"]["arguments"]["properties"]["state"] == {"$ref": "#/$defs/State"}
    assert second["properties"]["arguments"]["properties"]["state"] == {
        "$ref": "#/$defs/b__State"}
    assert schema["$defs"] == {"State": {"enum": ["x"]}, "b__State": {"enum": ["y"]}}
    assert "$defs" not in first["properties"]["arguments"]


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
async def test_keep_alive_false_asks_for_a_fresh_connection_each_time(
        http_client: str) -> None:
    """What ``wakeful model serve``'s provider entry sets: llama.cpp's server closes a
    connection after each streamed reply, so none is reused and none is dropped."""
    async with KeepAliveDropper() as base_url:
        provider = make_provider("local", config(base_url, max_retries=0, keep_alive=False,
                                                 http_client=http_client))
        try:
            model = provider.model("m")
            replies = [await model.complete(HELLO, []) for _ in range(3)]
        finally:
            await provider.aclose()
    assert [r.call_info["attempts"] for r in replies] == [1, 1, 1]


def test_json_schema_mode_bounds_what_the_grammar_cannot_otherwise_hold() -> None:
    """Free text gets a length bound (a looping model still closes its JSON); a bounded
    number becomes a bounded integer (llama.cpp enforces integer bounds only)."""
    from wakeful.models.json_tools import reply_schema

    tool = ToolSpec("wait", "", {"type": "object", "properties": {
        "why": {"type": "string", "maxLength": 5000},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "timeout_s": {"anyOf": [{"type": "number", "exclusiveMinimum": 0,
                                 "maximum": 86400.5}, {"type": "null"}]},
        "ratio": {"type": "number"}}})
    arguments = reply_schema([tool], 200)["anyOf"][0]["properties"]["arguments"]
    properties = arguments["properties"]
    assert properties["why"] == {"type": "string", "maxLength": 200}
    assert properties["mode"] == {"type": "string", "enum": ["a", "b"]}
    assert properties["timeout_s"]["anyOf"][0] == {"type": "integer", "minimum": 1,
                                                   "maximum": 86400}
    assert properties["ratio"] == {"type": "number"}  # unbounded: left as it is


def test_options_the_anthropic_api_lacks_are_refused_clearly() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not available with kind: anthropic: seed, "
                                              "tool_calls: json_schema"):
        ProviderConfig(kind="anthropic", seed=1, tool_calls="json_schema")
    assert ProviderConfig(kind="anthropic", top_p=0.5, stop=["x"]).stop == ["x"]


async def test_anthropic_gets_the_parameters_its_api_has(server: ModelServer) -> None:
    provider = make_provider("claude", ProviderConfig(
        kind="anthropic", base_url=server.base_url.removesuffix("/v1"),
        api_key_required=False, stream=False, top_p=0.8, stop=["END"], temperature=0.2,
        extra_body={"metadata": {"user_id": "u1"}}))
    try:
        await provider.model("claude-x").complete(HELLO, [])
    finally:
        await provider.aclose()
    [received] = server.calls("/v1/messages")
    assert received.body["top_p"] == 0.8 and received.body["stop_sequences"] == ["END"]
    assert received.body["metadata"] == {"user_id": "u1"}
    assert received.body["temperature"] == 0.2
