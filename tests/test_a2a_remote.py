"""Remote A2A agents as teammates: Wakeful's A2A client against a server made with the
a2a-sdk (its own request handler, task store and transports) that the test starts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from a2a.helpers.proto_helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Part,
)
from starlette.applications import Starlette

from conftest import AgentFactory, RuntimeFactory, ScriptFactory
from interop_support import free_port
from wakeful.core.records import Event
from wakeful.interop.a2a_remote import proxy_definition
from wakeful.project.interop import RemoteAgentConfig
from wakeful.runtime.runtime import Runtime
from wakeful.server.interop import InteropService


@dataclass
class Echo(AgentExecutor):
    """Answers 'Remote says: TEXT' in three streamed chunks; 'ask me' first asks a
    question; 'slow' works until cancelled."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    seen_contexts: list[str] = field(default_factory=list)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task
        if task is None:
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        self.seen_contexts.append(task.context_id)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        text = context.get_user_input()
        if "ask me" in text and context.current_task is None:
            await updater.requires_input(updater.new_agent_message(
                [Part(text="Which color?")]))
            return
        await updater.start_work()
        self.started.set()
        if "slow" in text:
            await asyncio.sleep(120)
        for index, chunk in enumerate(["Remote ", "says: ", text]):
            await updater.add_artifact([Part(text=chunk)], artifact_id="answer",
                                       append=index > 0, last_chunk=index == 2)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.cancelled.set()
        assert context.task_id and context.context_id
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


@dataclass
class Remote:
    url: str
    executor: Echo


@pytest.fixture
async def remote() -> AsyncIterator[Remote]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    card = AgentCard(name="echo", description="echoes", version="1.0",
                     supported_interfaces=[AgentInterface(
                         url=f"{url}/", protocol_binding="JSONRPC", protocol_version="1.0")],
                     capabilities=AgentCapabilities(streaming=True),
                     skills=[AgentSkill(id="echo", name="echo", description="echoes",
                                        tags=["echo"])],
                     default_input_modes=["text/plain"], default_output_modes=["text/plain"])
    executor = Echo()
    handler = DefaultRequestHandler(agent_executor=executor, task_store=InMemoryTaskStore(),
                                    agent_card=card)
    app = Starlette(routes=[*create_agent_card_routes(card),
                            *create_jsonrpc_routes(handler, "/")])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done()
        await asyncio.sleep(0.01)
    yield Remote(url, executor)
    server.should_exit = True
    await serving


async def team(make_runtime: RuntimeFactory, agent_def: AgentFactory,
               script: ScriptFactory, remote: Remote) -> Runtime:
    config = RemoteAgentConfig(name="echo", url=remote.url, timeout_s=30)
    boss = agent_def("boss", model="boss", tools=["delegate_task"])
    runtime = await make_runtime([boss, proxy_definition(config)], {"boss": script([
        {"say": "delegating", "tool_calls": [
            {"tool": "delegate_task", "args": {"agent": "a2a:echo",
                                               "instruction": "hello"}}]},
        {"say": "Boss got: {last_tool_result}"}])}, start=False)
    runtime.add_service(InteropService(remote_agents=[config], serve_mcp=False))
    await runtime.start()
    return runtime


async def test_delegating_to_a_remote_agent(make_runtime: RuntimeFactory,
                                            agent_def: AgentFactory, script: ScriptFactory,
                                            remote: Remote) -> None:
    runtime = await team(make_runtime, agent_def, script, remote)
    tokens: list[str] = []
    with runtime.events.subscribe(lambda e: e.type == "model.token" and e.agent == "echo") as feed:
        record = await runtime.create_task("boss", "get an echo")
        done = await runtime.wait_task(record.id, 60)
        while (event := feed.get_nowait()) is not None:
            tokens.append(event.data["text"])
    assert done.state.value == "done", done.error
    assert "Remote says: hello" in (done.result or "")
    assert "".join(tokens) == "Remote says: hello"  # streamed as it came
    [proxy] = await runtime.store.child_tasks([record.id])
    assert remote.executor.seen_contexts == [proxy.id]  # the context is the Wakeful task


async def test_remote_input_required_becomes_a_question(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
        remote: Remote) -> None:
    runtime = await team(make_runtime, agent_def, script, remote)
    record = await runtime.create_task("echo", "ask me something", created_by="person:ada")

    async def question() -> list[object]:
        return await runtime.mailbox.list_mail(owner="person:ada", status="pending")

    while not (asked := await question()):
        await runtime.wait_changed()
    mail = await runtime.mailbox.read("person:ada", asked[0].id)  # type: ignore[attr-defined]
    assert mail.body == "Which color?"
    await runtime.mailbox.reply("person:ada", mail, "blue")
    done = await runtime.wait_task(record.id, 60)
    assert done.result == "Remote says: blue"


async def asking_team(make_runtime: RuntimeFactory, agent_def: AgentFactory,
                      script: ScriptFactory, remote: Remote, first: dict[str, object]
                      ) -> Runtime:
    """A boss whose first call reaches the remote agent, which asks a question; the
    boss answers it with ``reply`` and then takes the remote agent's result as mail."""
    config = RemoteAgentConfig(name="echo", url=remote.url, timeout_s=30)
    boss = agent_def("boss", model="boss", tools=["delegate_task", "request", "reply",
                                                  "check_mail"])
    runtime = await make_runtime([boss, proxy_definition(config)], {"boss": script([
        {"say": "asking", "tool_calls": [first]},
        {"say": "answering", "tool_calls": [{"tool": "reply", "args": {"body": "blue"}}]},
        {"say": "waiting", "tool_calls": [{"tool": "check_mail", "args": {
            "sender": "echo", "wait_s": 60, "ack": True}}]},
        {"say": "Boss got: {last_tool_result}"}])}, start=False)
    runtime.add_service(InteropService(remote_agents=[config], serve_mcp=False))
    await runtime.start()
    return runtime


def tool_results(events: list[Event], tool: str) -> list[str]:
    """What the boss's ``tool`` calls returned (an excerpt: long results are cut)."""
    return [e.data["result"] for e in events
            if e.type == "tool.call" and e.agent == "boss" and e.data["tool"] == tool]


@pytest.mark.parametrize("first", [
    {"tool": "delegate_task", "args": {"agent": "a2a:echo", "instruction": "ask me"}},
    {"tool": "request", "args": {"to": "a2a:echo", "subject": "colors", "body": "ask me"}},
], ids=["delegate_task", "request"])
async def test_remote_input_required_is_a_question_to_the_waiting_task(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
        remote: Remote, first: dict[str, object]) -> None:
    """The delegating (or requesting) task is blocked in its tool; the remote agent's
    question wakes it as that tool's result, its reply goes on the same remote task,
    and the remote task's final answer comes back as mail."""
    runtime = await asking_team(make_runtime, agent_def, script, remote, first)
    with runtime.events.subscribe(lambda e: e.task_id is not None) as feed:
        record = await runtime.create_task("boss", "find a color")
        done = await runtime.wait_task(record.id, 60)
        seen = []
        while (event := feed.get_nowait()) is not None:
            seen.append(event)
    assert done.state.value == "done", done.error
    assert "Remote says: blue" in (done.result or "")
    [asked] = tool_results(seen, str(first["tool"]))
    if first["tool"] == "delegate_task":
        question = json.loads(asked)
        assert (question["state"], question["question"]) == ("input-required", "Which color?")
    else:  # the request's reply is the question
        assert '"body": "Which color?"' in asked and '"input_required": true' in asked
    [answered] = tool_results(seen, "reply")
    assert json.loads(answered)["to"].startswith("echo/")  # to the forwarding task itself
    # One remote task, asked once and continued with the answer (not a second task).
    [remote_task] = {e.data["remote_task"] for e in seen
                     if e.type == "a2a.remote.result" and e.data["remote_task"]}
    states = [e.data["state"] for e in seen if e.type == "a2a.remote.result"]
    assert states == ["TASK_STATE_INPUT_REQUIRED", "TASK_STATE_COMPLETED"]
    assert remote_task
    assert len(set(remote.executor.seen_contexts)) == 1


async def test_mail_to_a_remote_agent_is_answered_by_mail(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
        remote: Remote) -> None:
    config = RemoteAgentConfig(name="echo", url=remote.url, timeout_s=30)
    boss = agent_def("boss", model="boss", tools=["request"])
    runtime = await make_runtime([boss, proxy_definition(config)], {"boss": script([
        {"say": "asking", "tool_calls": [{"tool": "request", "args": {
            "to": "a2a:echo", "subject": "hi", "body": "hello there"}}]},
        {"say": "Boss got: {last_tool_result}"}])}, start=False)
    runtime.add_service(InteropService(remote_agents=[config], serve_mcp=False))
    await runtime.start()
    record = await runtime.create_task("boss", "greet the remote agent")
    done = await runtime.wait_task(record.id, 60)
    assert done.state.value == "done", done.error
    assert "Remote says: hi" in (done.result or "")
    assert "hello there" in (done.result or "")


async def test_cancelling_the_task_cancels_the_remote_task(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
        remote: Remote) -> None:
    runtime = await team(make_runtime, agent_def, script, remote)
    record = await runtime.create_task("echo", "a slow job")
    await asyncio.wait_for(remote.executor.started.wait(), 30)
    await runtime.cancel_task(record.id)
    await asyncio.wait_for(remote.executor.cancelled.wait(), 30)
    assert (await runtime.get_task(record.id)).state.value == "cancelled"


async def test_an_unreachable_remote_agent_fails_the_task_clearly(
        make_runtime: RuntimeFactory, agent_def: AgentFactory) -> None:
    config = RemoteAgentConfig(name="gone", url=f"http://127.0.0.1:{free_port()}",
                               timeout_s=5, retries=1)
    runtime = await make_runtime([proxy_definition(config)], start=False)
    runtime.add_service(InteropService(remote_agents=[config], serve_mcp=False))
    await runtime.start()
    record = await runtime.create_task("gone", "hello?")
    done = await runtime.wait_task(record.id, 60)
    assert done.state.value == "failed"
    assert "remote A2A agent 'gone'" in (done.error or "")


def test_a2a_addresses_name_the_remote_agent() -> None:
    from wakeful.core.mail import AddressKind, parse_address

    address = parse_address("a2a:echo")
    assert (address.kind, address.name, str(address)) == (AddressKind.AGENT, "echo", "echo")
    assert parse_address("a2a:echo/t_1m8q00r208fhw13fb").task_id == "t_1m8q00r208fhw13fb"
