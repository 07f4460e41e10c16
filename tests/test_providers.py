"""The OpenAI and Anthropic providers, through the official SDKs over real HTTP.

Every test talks to :class:`wakeful.testing.ModelServer`, a Starlette app on a real
loopback socket that speaks the providers' wire protocols (JSON, SSE, tool-call deltas)
and misbehaves on cue (429 + Retry-After, 500s, hangs, broken streams). Nothing in the
SDKs is patched: what is asserted is what went over the wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wakeful.errors import ConfigError
from wakeful.models import Completed, Message, TextDelta, ToolCallDelta, ToolSpec
from wakeful.models.calls import reporting_to
from wakeful.models.config import ModelPrice, ProviderConfig
from wakeful.models.registry import ModelRegistry
from wakeful.models.remote import ProviderError, RemoteModel
from wakeful.testing import FakeToolCall, ModelServer, Reply

KEY = "sk-test-4f9c2a7e"
CHAT = [Message(role="system", content="You are terse."), Message(role="user", content="hi")]
NOTE = ToolSpec("note", "Write a note.", {"type": "object",
                                          "properties": {"text": {"type": "string"}}})


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer(api_key=KEY) as running:
        yield running


@pytest.fixture
async def registry(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    """Registries made by ``connect`` are closed (connections released) after the test."""
    monkeypatch.setenv("WAKEFUL_TEST_KEY", KEY)
    made: dict[str, Any] = {}
    yield made
    for item in made.values():
        await item.aclose()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds (the server runs in another thread)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def connect(registry: dict[str, Any], server: ModelServer, kind: str = "openai",
            **settings: Any) -> RemoteModel:
    base = server.base_url if kind == "openai" else server.base_url.removesuffix("/v1")
    config = ProviderConfig(kind=kind, base_url=base, api_key_env="WAKEFUL_TEST_KEY",  # type: ignore[arg-type]
                            **settings)
    models = ModelRegistry(Path("."), providers={"local": config})
    registry[str(len(registry))] = models
    model = models.get("local:test-model")
    assert isinstance(model, RemoteModel)
    return model


BACKENDS = pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])


class Recorder:
    """Collects what a provider reports during calls (model.retry, model.throttled)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event_type: str, data: dict[str, Any]) -> None:
        self.events.append((event_type, data))

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [data for kind, data in self.events if kind == event_type]


async def drain(model: RemoteModel, tools: list[ToolSpec] | None = None
                ) -> tuple[list[Any], Any]:
    events = [event async for event in model.stream(CHAT, tools or [])]
    assert isinstance(events[-1], Completed)
    return events[:-1], events[-1].response


# --- the happy paths ---------------------------------------------------------

async def test_plain_chat_sends_the_key_and_prices_the_reply(
        server: ModelServer, registry: dict[str, Any]) -> None:
    prices = {"test-model": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0)}
    model = connect(registry, server, stream=False, prices=prices)
    server.script(Reply(text="Hello there.", usage=(1200, 300)))
    response = await model.complete(CHAT, [NOTE])
    assert response.message.content == "Hello there."
    assert response.usage.input_tokens == 1200 and response.usage.output_tokens == 300
    assert response.cost == pytest.approx((1200 * 2.0 + 300 * 8.0) / 1e6)
    [request] = server.calls()
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert not request.stream
    assert request.body["messages"][1] == {"role": "user", "content": "hi"}
    assert request.body["tools"][0]["function"]["name"] == "note"


async def test_streaming_yields_text_deltas_then_the_whole_reply(
        server: ModelServer, registry: dict[str, Any]) -> None:
    model = connect(registry, server)
    server.script(Reply(text="one two three four", usage=(10, 4)))
    deltas, response = await drain(model)
    assert [d.text for d in deltas] == ["one ", "two ", "three ", "four"]
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert response.message.content == "one two three four"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 4)
    assert response.cost is None  # no price configured for this model
    [request] = server.calls()
    assert request.stream and request.body["stream_options"] == {"include_usage": True}


@BACKENDS
async def test_streamed_tool_call_deltas_are_assembled_by_index(
        server: ModelServer, registry: dict[str, Any], http_client: str) -> None:
    model = connect(registry, server, http_client=http_client)
    server.script(Reply(text="Let me note that.", tool_calls=[
        FakeToolCall("note", '{"text": "a fairly long first note"}', id="call_a"),
        FakeToolCall("note", '{"text": "second"}', id="call_b")]))
    deltas, response = await drain(model, [NOTE])
    pieces = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert {d.index for d in pieces} == {0, 1}
    assert len([d for d in pieces if d.index == 0]) > 3  # the arguments came in pieces
    calls = response.message.tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_a", "note", '{"text": "a fairly long first note"}'),
        ("call_b", "note", '{"text": "second"}')]
    assert response.message.content == "Let me note that."
    assert response.finish_reason == "tool_calls"


# --- failures: retries, timeouts, cancellation ---------------------------------

@BACKENDS
async def test_429_retry_after_is_honoured(
        server: ModelServer, registry: dict[str, Any], http_client: str) -> None:
    model = connect(registry, server, backoff_initial_s=0.01, http_client=http_client)
    server.script(Reply(status=429, retry_after=1, error="slow down"), Reply(text="fine"))
    recorder = Recorder()
    with reporting_to(recorder):
        _, response = await drain(model)
    assert response.message.content == "fine"
    first, second = server.calls()
    assert first.status == 429 and second.status == 200
    assert second.started - first.started >= 0.95  # waited for Retry-After, not the backoff
    [retry] = recorder.of("model.retry")
    assert retry["status"] == 429 and retry["retry_after_s"] == 1.0
    assert retry["delay_s"] == 1.0 and "slow down" in retry["error"]


async def test_429_holds_back_every_caller_of_the_provider(
        server: ModelServer, registry: dict[str, Any]) -> None:
    model = connect(registry, server, concurrency=8)
    server.script(Reply(status=429, retry_after=1))
    first = asyncio.create_task(model.complete(CHAT, []))
    await server.wait_for_requests(1)
    await asyncio.sleep(0.2)  # the 429 has been received and the hold set
    started = time.monotonic()
    await model.complete(CHAT, [])  # a different caller, after the 429
    assert time.monotonic() - started >= 0.6
    await first


async def test_a_retry_after_beyond_the_limit_fails_at_once(
        server: ModelServer, registry: dict[str, Any]) -> None:
    model = connect(registry, server, max_retry_after_s=5)
    server.script(Reply(status=429, retry_after=3600, error="daily quota used up"))
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await model.complete(CHAT, [])
    assert time.monotonic() - started < 2 and len(server.calls()) == 1
    assert "asks to wait 3600 s, more than max_retry_after_s (5 s)" in str(caught.value)
    assert "daily quota used up" in str(caught.value)


async def test_500s_are_retried_then_succeed(server: ModelServer,
                                             registry: dict[str, Any]) -> None:
    model = connect(registry, server, backoff_initial_s=0.05)
    server.script(Reply(status=500), Reply(status=503), Reply(text="recovered"))
    recorder = Recorder()
    with reporting_to(recorder):
        _, response = await drain(model)
    assert response.message.content == "recovered"
    assert [r.status for r in server.calls()] == [500, 503, 200]
    assert [r["attempt"] for r in recorder.of("model.retry")] == [1, 2]


async def test_final_failure_after_the_retry_budget(server: ModelServer,
                                                    registry: dict[str, Any]) -> None:
    model = connect(registry, server, max_retries=2, backoff_initial_s=0.02)
    server.default = Reply(status=502, error="upstream down")
    with pytest.raises(ProviderError) as caught:
        await model.complete(CHAT, [])
    assert len(server.calls()) == 3
    message = str(caught.value)
    assert "gave up after 3 attempts (2 retries, max_retries)" in message
    assert "HTTP 502" in message and "upstream down" in message and "local:test-model" in message
    assert caught.value.retryable and caught.value.status == 502


async def test_a_wrong_key_fails_at_once_and_the_key_is_never_shown(
        server: ModelServer, registry: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAKEFUL_TEST_KEY", "sk-wrong-key-1234")
    model = connect(registry, server)
    with pytest.raises(ProviderError) as caught:
        await model.complete(CHAT, [])
    assert len(server.calls()) == 1  # a 401 is not retried
    assert "HTTP 401" in str(caught.value) and "not retried" in str(caught.value)
    assert "sk-wrong-key-1234" not in str(caught.value)
    assert not caught.value.retryable


@BACKENDS
async def test_a_hung_request_times_out_and_is_retried(
        server: ModelServer, registry: dict[str, Any], http_client: str) -> None:
    model = connect(registry, server, timeout_s=0.3, max_retries=1, backoff_initial_s=0.01,
                    http_client=http_client)
    server.script(Reply(hang=True), Reply(hang=True))
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await model.complete(CHAT, [])
    assert 0.55 <= time.monotonic() - started < 5
    assert "no response within 0.3 s (timeout_s)" in str(caught.value)
    await asyncio.sleep(0.2)
    assert [r.disconnected for r in server.calls()] == [True, True]


@BACKENDS
async def test_a_stream_that_stalls_midway_is_restarted(
        server: ModelServer, registry: dict[str, Any], http_client: str) -> None:
    model = connect(registry, server, timeout_s=0.3, backoff_initial_s=0.01,
                    http_client=http_client)
    server.script(Reply(text="alpha beta gamma delta", hang_after_chunks=3),
                  Reply(text="alpha beta gamma delta"))
    recorder = Recorder()
    with reporting_to(recorder):
        _, response = await drain(model)
    assert response.message.content == "alpha beta gamma delta"
    [retry] = recorder.of("model.retry")
    assert retry["restarted_stream"] is True and "timeout_s" in retry["error"]


async def test_cancelling_the_caller_aborts_the_request(server: ModelServer,
                                                        registry: dict[str, Any]) -> None:
    model = connect(registry, server, timeout_s=30)
    server.script(Reply(text="never sent", hang=True))
    call = asyncio.create_task(model.complete(CHAT, []))
    await server.wait_for_requests(1)
    assert model.provider.limits.in_flight == 1
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await eventually(lambda: server.calls()[0].disconnected, "the client never went away")
    assert model.provider.limits.in_flight == 0  # the slot was given back


@BACKENDS
async def test_cancelling_mid_stream_closes_the_response(
        server: ModelServer, registry: dict[str, Any], http_client: str) -> None:
    model = connect(registry, server, timeout_s=30, http_client=http_client)
    server.script(Reply(text="a b c d e f", hang_after_chunks=3))
    seen: list[str] = []

    async def consume() -> None:
        async for event in model.stream(CHAT, []):
            if isinstance(event, TextDelta):
                seen.append(event.text)

    task = asyncio.create_task(consume())
    await eventually(lambda: len(seen) >= 2, "no text streamed")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: server.calls()[0].disconnected, "the stream was not closed")
    assert model.provider.limits.in_flight == 0


# --- limits -------------------------------------------------------------------

async def test_concurrency_limit_caps_requests_in_flight(server: ModelServer,
                                                         registry: dict[str, Any]) -> None:
    model = connect(registry, server, concurrency=3)
    server.latency_s = 0.15
    await asyncio.gather(*(model.complete(CHAT, []) for _ in range(10)))
    calls = server.calls()
    assert len(calls) == 10
    most = max(sum(1 for o in calls if o.started <= c.started < (o.finished or 0))
               for c in calls)
    assert most <= 3
    assert model.provider.limits.peak_in_flight == 3


async def test_httpx_connections_are_spread_over_small_pools(
        server: ModelServer, registry: dict[str, Any]) -> None:
    model = connect(registry, server, http_client="httpx", concurrency=20)
    server.latency_s = 0.2
    await asyncio.gather(*(model.complete(CHAT, []) for _ in range(20)))
    clients = model.provider.clients
    assert clients.shard_connections == 8 and len(clients.clients) == 3
    assert model.provider.limits.peak_in_flight == 20


async def test_token_rate_limit_charges_real_usage(server: ModelServer,
                                                   registry: dict[str, Any]) -> None:
    # 6,000 tokens a minute = 100 a second, burst 100. Each call really uses 50 tokens,
    # far more than the tiny prompt suggests: the limiter must charge the difference.
    model = connect(registry, server, tokens_per_minute=6000, stream=False)
    server.default = Reply(text="ok", usage=(40, 10))
    started = time.monotonic()
    for _ in range(6):
        await model.complete(CHAT, [])
    elapsed = time.monotonic() - started
    # The 6th call may start once the first five's 250 tokens, less the burst of 100,
    # have been earned back: 1.5 s at 100 tokens a second. (Charging only the ~5-token
    # prompt estimates would let all six through at once.)
    assert elapsed >= 1.4, elapsed


async def test_missing_key_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    config = ProviderConfig(base_url="http://127.0.0.1:9/v1", api_key_env="NOT_SET_ANYWHERE")
    models = ModelRegistry(Path("."), providers={"local": config})
    with pytest.raises(ConfigError, match="set the environment variable NOT_SET_ANYWHERE"):
        models.get("local:x")
    with pytest.raises(ConfigError, match="unknown provider 'nowhere'"):
        models.get("nowhere:x")
    keyless = ModelRegistry(Path("."), providers={"local": config.model_copy(
        update={"api_key_required": False})})
    assert keyless.get("local:x").name == "local:x"
    await keyless.aclose()


# --- Anthropic ------------------------------------------------------------------

async def test_anthropic_streams_text_and_tool_use(server: ModelServer,
                                                   registry: dict[str, Any]) -> None:
    model = connect(registry, server, kind="anthropic")
    server.script(Reply(text="Noting it.", usage=(30, 12), tool_calls=[
        FakeToolCall("note", '{"text": "from claude"}', id="toolu_1")]))
    deltas, response = await drain(model, [NOTE])
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == "Noting it."
    [call] = response.message.tool_calls
    assert (call.id, call.name, call.arguments) == ("toolu_1", "note",
                                                    '{"text": "from claude"}')
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 12)
    [request] = server.calls("/v1/messages")
    assert KEY in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:])
    assert request.body["system"] == "You are terse."
    assert request.body["messages"] == [{"role": "user",
                                         "content": [{"type": "text", "text": "hi"}]}]
    assert request.body["tools"][0]["input_schema"]["type"] == "object"


async def test_anthropic_conversation_with_tool_results_and_a_retry(
        server: ModelServer, registry: dict[str, Any]) -> None:
    model = connect(registry, server, kind="anthropic", stream=False, backoff_initial_s=0.01)
    server.script(Reply(status=529, error="overloaded"), Reply(text="All noted."))
    from wakeful.models import ToolCall

    conversation = [*CHAT,
                    Message(role="assistant", tool_calls=(ToolCall("toolu_9", "note", "{}"),)),
                    Message(role="tool", content="saved", tool_call_id="toolu_9")]
    response = await model.complete(conversation, [NOTE])
    assert response.message.content == "All noted."
    assert [r.status for r in server.calls("/v1/messages")] == [529, 200]
    turns = server.calls("/v1/messages")[1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [{"type": "tool_use", "id": "toolu_9", "name": "note",
                                    "input": {}}]
    assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_9",
                                    "content": "saved"}]
