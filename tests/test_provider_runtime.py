"""Agents running on a real provider over real HTTP: tool calls, bad model output,
budgets, cancellation, and many agents sharing one rate limit.

The runtime uses a real SQLite store; the model is the OpenAI provider talking to
:class:`wakeful.testing.ModelServer` on loopback. What the model "says" is scripted
per model name, and assertions look at what went over the wire, what the store holds
and what the event log recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wakeful import AgentDefinition, Runtime, SQLiteStore, TaskState
from wakeful.core.records import Event
from wakeful.errors import ConfigError
from wakeful.models.config import ModelPrice, ProviderConfig
from wakeful.models.registry import ModelRegistry
from wakeful.project.loader import load_project
from wakeful.testing import FakeToolCall, ModelServer, Reply

KEY = "sk-runtime-test-93be1f"
TOOLS = ["note", "read_notes"]

Start = Callable[..., Awaitable[Runtime]]


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer(api_key=KEY) as running:
        yield running


@pytest.fixture
async def start(tmp_path: Path, server: ModelServer, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[Start]:
    """Start a runtime whose provider ``local`` is the test server; stopped after."""
    monkeypatch.setenv("WAKEFUL_TEST_KEY", KEY)
    started: list[Runtime] = []

    async def make(*agents: AgentDefinition, **settings: Any) -> Runtime:
        config = ProviderConfig(base_url=server.base_url, api_key_env="WAKEFUL_TEST_KEY",
                                **settings)
        runtime = Runtime(store=SQLiteStore(tmp_path / "wakeful.db"),
                          models=ModelRegistry(tmp_path, providers={"local": config}),
                          agents=agents)
        await runtime.start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        await runtime.stop()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds (the server runs in another thread)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def agent(name: str, model: str, **fields: Any) -> AgentDefinition:
    return AgentDefinition(name=name, model=f"local:{model}", tools=TOOLS, **fields)


async def events_of(runtime: Runtime, *types: str, task_id: str | None = None) -> list[Event]:
    await runtime.store.flush()
    return await runtime.store.query_events(types=types, task_id=task_id)


def store_bytes(folder: Path) -> bytes:
    """Everything the SQLite store wrote (database, WAL), as raw bytes."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob("wakeful.db*")))


async def run_task(runtime: Runtime, agent_name: str, instruction: str = "do it") -> Any:
    record = await runtime.create_task(agent_name, instruction)
    return await runtime.wait_task(record.id, timeout=30)


async def test_a_task_runs_streamed_tool_calls_and_is_accounted(
        start: Start, server: ModelServer, tmp_path: Path) -> None:
    prices = {"m": ModelPrice(input_per_mtok=1.0, output_per_mtok=3.0)}
    runtime = await start(agent("worker", "m"), prices=prices)
    server.script(Reply(text="Noting.", usage=(100, 20), tool_calls=[
                      FakeToolCall("note", '{"text": "remember the milk"}')]),
                  Reply(text="Done: noted.", usage=(150, 10)), model="m")
    with runtime.events.subscribe(lambda e: e.type == "model.token") as tokens:
        task = await run_task(runtime, "worker")
        streamed = []
        while (event := tokens.get_nowait()) is not None:
            streamed.append(event.data["text"])
    assert task.state is TaskState.DONE and task.result == "Done: noted."
    assert "".join(streamed) == "Noting.Done: noted."

    _, second = server.calls()
    [assistant, tool] = second.body["messages"][2:]
    assert assistant["tool_calls"][0]["function"] == {"name": "note",
                                                      "arguments": '{"text": "remember the milk"}'}
    assert tool["tool_call_id"] == assistant["tool_calls"][0]["id"]
    assert tool["role"] == "tool" and tool["content"] == "noted (1 notes in this task)"

    cost = (250 * 1.0 + 30 * 3.0) / 1e6
    stored = await runtime.store.get_task(task.id)
    assert stored is not None
    assert (stored.input_tokens, stored.output_tokens, stored.tool_calls) == (250, 30, 1)
    assert stored.cost == pytest.approx(cost)
    calls = await events_of(runtime, "model.call", task_id=task.id)
    assert [e.data["cost"] for e in calls] == pytest.approx([160e-6, 180e-6])
    assert runtime.agents["worker"].ledger.spent.cost == 0  # no agent budget: not loaded
    assert runtime.usage.by_agent["worker"].cost == pytest.approx(cost)

    await runtime.stop()
    assert KEY.encode() not in store_bytes(tmp_path)  # the API key never reaches the store


async def test_run_usage_is_recorded_when_the_run_stops(start: Start, server: ModelServer,
                                                        tmp_path: Path) -> None:
    runtime = await start(agent("a", "m"), agent("b", "m"),
                          prices={"*": ModelPrice(input_per_mtok=10, output_per_mtok=10)})
    server.default = Reply(text="ok", usage=(1000, 0))
    await run_task(runtime, "a")
    await run_task(runtime, "b")
    await runtime.stop()
    store = SQLiteStore(tmp_path / "wakeful.db")
    await store.open()
    try:
        [stopped] = await store.query_events(types=["run.stopped"])
    finally:
        await store.close()
    usage = stopped.data["usage"]
    assert usage["calls"] == 2 and usage["input_tokens"] == 2000
    assert usage["cost"] == pytest.approx(0.02)
    assert usage["agents"]["a"]["cost"] == pytest.approx(0.01)


async def test_malformed_tool_calls_get_clear_answers(start: Start,
                                                      server: ModelServer) -> None:
    runtime = await start(agent("worker", "m"))
    server.script(Reply(text=None, tool_calls=[
                      FakeToolCall("note", '{"text": "unclosed'),
                      FakeToolCall("note", '{"colour": "red"}'),
                      FakeToolCall("fly", "{}")]),
                  Reply(text="Sorry, done."), model="m")
    task = await run_task(runtime, "worker")
    assert task.state is TaskState.DONE
    answers = [m["content"] for m in server.calls()[1].body["messages"] if m["role"] == "tool"]
    assert "are not valid JSON" in answers[0]
    assert "do not match its schema" in answers[1] and "text" in answers[1]
    assert "unknown tool 'fly'" in answers[2] and "note" in answers[2]
    recorded = await events_of(runtime, "tool.invalid_args", "tool.refused", task_id=task.id)
    assert [(e.type, e.data["reason"]) for e in recorded] == [
        ("tool.invalid_args", "invalid_json"), ("tool.invalid_args", "invalid_args"),
        ("tool.refused", "unknown")]


async def test_a_repeated_tool_call_is_stopped_then_fails_the_task(
        start: Start, server: ModelServer) -> None:
    runtime = await start(agent("looper", "loop"))
    server.responder = lambda body: Reply.call("read_notes", {})
    task = await run_task(runtime, "looper")
    assert task.state is TaskState.FAILED and task.error_kind == "tool_loop"
    assert "kept repeating the same call to tool 'read_notes'" in (task.error or "")
    assert len(server.calls()) == 5  # 2 calls ran, 3 were refused (the third ends it)
    ran = await events_of(runtime, "tool.call", task_id=task.id)
    loops = await events_of(runtime, "tool.loop", task_id=task.id)
    assert len(ran) == 2
    assert [e.data["repeats"] for e in loops] == [3, 4, 5]
    last_answer = server.calls()[3].body["messages"][-1]["content"]
    assert "same arguments 3 times in a row" in last_answer
    assert task.attempt == 0  # not retried: it would loop again


async def test_empty_replies_are_nudged_then_fail_the_task(start: Start,
                                                           server: ModelServer) -> None:
    runtime = await start(agent("mute", "mute"), agent("shy", "shy"))
    server.script(Reply(text=""), Reply(text="Here it is."), model="shy")
    server.script(*[Reply(text=None)] * 3, model="mute")
    shy = await run_task(runtime, "shy")
    assert shy.state is TaskState.DONE and shy.result == "Here it is."
    nudge = server.calls()[1].body["messages"][-1]
    assert nudge["role"] == "user" and "Your last reply was empty" in nudge["content"]

    mute = await run_task(runtime, "mute")
    assert mute.state is TaskState.FAILED and mute.error_kind == "empty_reply"
    assert "replied with nothing 3 times" in (mute.error or "")
    assert len(await events_of(runtime, "model.empty_reply", task_id=mute.id)) == 3


def counting_notes(usage: tuple[int, int]) -> Callable[[dict[str, Any]], Reply]:
    """A model that writes a different note on every call (no loop), forever."""
    counter = itertools.count()
    return lambda body: Reply.call("note", {"text": f"note {next(counter)}"}, usage=usage)


async def test_task_budgets_stop_the_loop(start: Start, server: ModelServer) -> None:
    runtime = await start(
        agent("tokens", "m", budget={"task": {"max_tokens": 500}}),
        agent("tools", "m", budget={"task": {"max_tool_calls": 3}}))
    server.responder = counting_notes(usage=(200, 50))
    task = await run_task(runtime, "tokens")
    assert task.state is TaskState.FAILED and task.error_kind == "budget"
    assert task.error == (f"budget exhausted: task {task.id} used 500 tokens of its "
                          f"budget.task.max_tokens of 500; task {task.id} stopped")
    assert len(server.calls()) == 2 and task.attempt == 0
    [exhausted] = await events_of(runtime, "budget.exhausted", task_id=task.id)
    assert exhausted.data == {"scope": "task", "limit_name": "max_tokens", "limit": 500.0,
                              "used": 500.0}

    task = await run_task(runtime, "tools")
    assert task.error_kind == "budget" and "budget.task.max_tool_calls of 3" in (task.error or "")
    assert task.tool_calls == 3


async def test_a_wall_time_budget_cuts_a_hung_call_short(start: Start,
                                                         server: ModelServer) -> None:
    runtime = await start(agent("slow", "m", budget={"task": {"max_wall_s": 0.5}}),
                          timeout_s=60)
    server.script(Reply(hang=True), model="m")
    started = time.monotonic()
    task = await run_task(runtime, "slow")
    assert time.monotonic() - started < 10
    assert task.error_kind == "budget" and "budget.task.max_wall_s of 0.5" in (task.error or "")
    await eventually(lambda: server.calls()[0].disconnected, "the hung request was not aborted")


async def test_an_agent_budget_holds_across_tasks_and_restarts(
        start: Start, server: ModelServer) -> None:
    thrifty = agent("thrifty", "m", budget={"agent": {"max_cost": 0.5}})
    prices = {"m": ModelPrice(input_per_mtok=1000, output_per_mtok=1000)}
    runtime = await start(thrifty, prices=prices)
    server.script(Reply.call("note", {"text": "a"}, usage=(200, 50)),  # 0.25
                  Reply(text="first done", usage=(200, 50)), model="m")  # 0.25
    first = await run_task(runtime, "thrifty")
    assert first.state is TaskState.DONE and first.cost == pytest.approx(0.5)
    second = await run_task(runtime, "thrifty")
    assert second.error_kind == "budget"
    assert "agent 'thrifty' used 0.5 of its budget.agent.max_cost of 0.5" in (second.error or "")
    assert len(server.calls()) == 2  # the second task never called the model
    await runtime.stop()

    again = await start(thrifty, prices=prices)  # a new process: the ledger comes from the store
    third = await run_task(again, "thrifty")
    assert third.error_kind == "budget" and len(server.calls()) == 2


async def test_cancelling_a_task_aborts_its_request(start: Start, server: ModelServer) -> None:
    runtime = await start(agent("worker", "m"), timeout_s=60)
    server.script(Reply(hang=True), model="m")
    record = await runtime.create_task("worker", "wait forever")
    await server.wait_for_requests(1)
    cancelled = await runtime.cancel_task(record.id)
    assert cancelled.state is TaskState.CANCELLED
    await eventually(lambda: server.calls()[0].disconnected, "the request outlived its task")
    assert runtime.models.provider("local").limits.in_flight == 0


async def test_stopping_the_runtime_aborts_requests_and_requeues_the_task(
        start: Start, server: ModelServer, tmp_path: Path) -> None:
    runtime = await start(agent("worker", "m"), timeout_s=60)
    server.script(Reply(hang=True), Reply(text="resumed and done"), model="m")
    record = await runtime.create_task("worker", "survive a restart")
    await server.wait_for_requests(1)
    started = time.monotonic()
    await runtime.stop()
    assert time.monotonic() - started < 10
    await eventually(lambda: server.calls()[0].disconnected, "the request outlived the runtime")
    assert not runtime.models.provider("local").clients.clients  # connections closed
    again = await start(agent("worker", "m"))
    task = await again.wait_task(record.id, timeout=30)
    assert task.state is TaskState.DONE and task.result == "resumed and done"


async def test_a_provider_that_refuses_the_key_fails_the_task_for_good(
        start: Start, server: ModelServer) -> None:
    server.api_key = "sk-a-different-key"
    runtime = await start(agent("worker", "m"))
    task = await run_task(runtime, "worker")
    assert task.state is TaskState.FAILED and task.error_kind == "model"
    assert "HTTP 401" in (task.error or "") and KEY not in (task.error or "")
    assert task.attempt == 0 and len(server.calls()) == 1


async def test_the_rate_limiter_holds_many_agents_to_the_configured_rate(
        start: Start, server: ModelServer) -> None:
    # 1,200 requests a minute = 20 a second, with a burst of 20; 40 agents at once.
    agents = [agent(f"agent-{i:02d}", "m") for i in range(40)]
    runtime = await start(*agents, requests_per_minute=1200, concurrency=100)
    records = await asyncio.gather(*(runtime.create_task(a.name, "go") for a in agents))
    await runtime.wait_idle(30)
    done = [(await runtime.get_task(r.id)).state for r in records]
    assert done == [TaskState.DONE] * 40
    times = sorted(r.started for r in server.calls())
    assert len(times) == 40
    # The 20 past the burst take 1 s at 20 a second (less a margin: the first request's
    # own start can be late, e.g. while the connection opens). Unlimited, all 40 start
    # within a few tens of milliseconds.
    assert times[-1] - times[0] >= 0.7
    # No half-second holds more than burst + rate * 0.5 (unlimited: all 40). Times are
    # arrivals at the server: on a busy machine a few calls let through apart can arrive
    # together, hence the margin of 5.
    for i, first in enumerate(times):
        assert sum(1 for t in times[i:] if t < first + 0.5) <= 20 + 10 + 5
    throttled = await events_of(runtime, "model.throttled")
    assert all(e.agent for e in throttled)
    if times[-1] - times[0] < 1.5:  # the calls came about as fast as the rate allows:
        assert throttled  # they were held, and each hold is recorded (on a busy
        # machine the agents may ask so slowly that nothing needs holding)


async def test_providers_come_from_the_project_file(tmp_path: Path, server: ModelServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_LLM_KEY", KEY)
    (tmp_path / "agents").mkdir()
    (tmp_path / "wakeful.yaml").write_text(
        "name: remote\n"
        "default_model: local:tiny\n"
        "providers:\n"
        "  local:\n"
        f"    base_url: {server.base_url}\n"
        "    api_key_env: LOCAL_LLM_KEY\n"
        "    concurrency: 4\n"
        "    requests_per_minute: 600\n"
        "    prices: {tiny: {input_per_mtok: 1, output_per_mtok: 2}}\n")
    (tmp_path / "agents" / "helper.yaml").write_text(
        "name: helper\ntools: [note]\nbudget:\n  task: {max_cost: 1.0}\n"
        "guards: {repeated_call_limit: 4}\n")
    project = load_project(tmp_path)
    assert not project.errors
    assert project.agents["helper"].guards.repeated_call_limit == 4
    runtime = Runtime.from_project(project)
    server.script(Reply(text="hello from the server", usage=(10, 5)), model="tiny")
    async with runtime:
        task = await run_task(runtime, "helper", "greet")
    assert task.result == "hello from the server"
    assert task.cost == pytest.approx(20e-6)


def test_bad_provider_settings_are_reported_with_the_field(tmp_path: Path) -> None:
    (tmp_path / "wakeful.yaml").write_text(
        "providers:\n  local:\n    api_key_env: sk-live-123\n    concurrency: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    message = str(caught.value)
    assert "providers.local.api_key_env" in message and "providers.local.concurrency" in message
    (tmp_path / "wakeful.yaml").write_text("providers:\n  scripted: {}\n")
    with pytest.raises(ConfigError, match="'scripted' is reserved"):
        load_project(tmp_path)
