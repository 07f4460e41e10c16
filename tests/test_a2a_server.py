"""Wakeful's A2A server, driven by the a2a-sdk's own client over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskState,
)

from a2a_support import sdk_client, send_request, user_message
from conftest import AgentFactory, RuntimeFactory
from wakeful.models.scripted import ScriptedModel, ScriptFile
from wakeful.server import WebServer
from wakeful.server.interop import InteropService
from web_support import TOKEN, serve

REPLY = "The capital of France is Paris, as every atlas agrees."


def helper_model() -> ScriptedModel:
    return ScriptedModel(ScriptFile.model_validate({
        "token_delay_ms": 5,
        "scripts": [
            {"match": "slow job", "steps": [{"say": "Working.", "latency_ms": 60_000}]},
            {"match": "ask me", "steps": [
                {"say": "I need to know something.",
                 "tool_calls": [{"tool": "ask_caller",
                                 "args": {"question": "Which city do you mean?"}}]},
                {"say": "You said: {last_tool_result}"}]},
            {"steps": [{"say": REPLY}]},
        ]}), name="helper")


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[WebServer]:
    runtime = await make_runtime(
        [agent_def("helper", model="scripted:helper", role="answers questions",
                   tools=["ask_caller"], max_concurrent_tasks=4),
         agent_def("quiet", model="scripted:helper")],
        {"scripted:helper": helper_model()}, start=False)
    runtime.add_service(InteropService())
    await runtime.start()
    server = await serve(runtime)
    yield server
    await server.stop()


async def collect(stream: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [item async for item in stream]


async def test_card_declares_transports_streaming_and_bearer(served: WebServer) -> None:
    async with httpx.AsyncClient() as http:
        card = (await http.get(f"{served.url}a2a/helper/.well-known/agent-card.json")).json()
        listing = (await http.get(f"{served.url}a2a")).json()
        missing = await http.get(f"{served.url}a2a/nobody/.well-known/agent-card.json")
    assert card["name"] == "helper"
    assert "answers questions" in card["description"]
    bindings = {i["protocolBinding"] for i in card["supportedInterfaces"]}
    assert bindings == {"JSONRPC", "HTTP+JSON"}
    assert card["supportedInterfaces"][0]["url"] == f"{served.url}a2a/helper"
    assert card["capabilities"]["streaming"] is True
    assert card["capabilities"]["pushNotifications"] is True
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    assert [c["name"] for c in listing["agents"]] == ["helper", "quiet"]
    assert missing.status_code == 404


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_send_message_runs_a_wakeful_task(served: WebServer, binding: str) -> None:
    async with sdk_client(served.url, "helper", streaming=False, binding=binding) as client:
        message = user_message("What is the capital of France?", metadata={"user": "ada"})
        [response] = await collect(client.send_message(send_request(message)))
    task = response.task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.artifacts[0].parts[0].text == REPLY
    assert task.context_id
    assert task.history[0].message_id == "m-1"
    record = await served.runtime.get_task(task.id)
    assert record.agent == "helper" and record.result == REPLY
    # The agent's task sees the message id, the context id and the metadata.
    assert "m-1" in record.instruction and task.context_id in record.instruction
    assert '"user": "ada"' in record.instruction


async def test_calls_without_the_token_are_refused(served: WebServer) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{served.url}a2a/helper", json={
            "jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}},
            headers={"A2A-Version": "1.0"})
    assert response.status_code == 401


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_streaming_sends_tokens_then_the_result(served: WebServer, binding: str) -> None:
    # The helper streams a token every 5 ms, all of it within the 50 ms the event log
    # coalesces a task's tokens over (tested in test_observe_tokens): coalesce over 1 ms
    # here, so that the reply comes in several chunks, each appended to the last.
    served.runtime.events.token_interval_s = 0.001
    async with sdk_client(served.url, "helper", binding=binding) as client:
        events = await collect(client.send_message(send_request(user_message("Capital?"))))
    assert events[0].HasField("task")
    chunks = [e.artifact_update for e in events if e.HasField("artifact_update")
              and e.artifact_update.artifact.artifact_id == "stream"]
    assert "".join(c.artifact.parts[0].text for c in chunks) == REPLY
    assert len(chunks) > 3 and not chunks[0].append and chunks[1].append
    result = [e.artifact_update for e in events if e.HasField("artifact_update")
              and e.artifact_update.artifact.artifact_id == "result"]
    assert result[0].artifact.parts[0].text == REPLY and result[0].last_chunk
    states = [e.status_update.status.state for e in events if e.HasField("status_update")]
    assert states[-1] == TaskState.TASK_STATE_COMPLETED


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_get_list_and_cancel(served: WebServer, binding: str) -> None:
    async with sdk_client(served.url, "helper", streaming=False, binding=binding) as client:
        [sent] = await collect(client.send_message(send_request(
            user_message("a slow job", message_id="m-slow"), return_immediately=True)))
        task_id = sent.task.id
        assert sent.task.status.state in (TaskState.TASK_STATE_SUBMITTED,
                                          TaskState.TASK_STATE_WORKING)
        got = await client.get_task(GetTaskRequest(id=task_id))
        assert got.id == task_id and got.history[0].message_id == "m-slow"
        listed = await client.list_tasks(ListTasksRequest())
        assert task_id in [t.id for t in listed.tasks]
        cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=task_id))
        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id="t_nosuchtask"))
    async with sdk_client(served.url, "quiet", streaming=False) as other:
        with pytest.raises(TaskNotFoundError):  # another agent's task is not found there
            await other.get_task(GetTaskRequest(id=task_id))


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_input_required_round_trip(served: WebServer, binding: str) -> None:
    async with sdk_client(served.url, "helper", streaming=False, binding=binding) as client:
        [first] = await collect(client.send_message(send_request(user_message("ask me"))))
        task = first.task
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert task.status.message.parts[0].text == "Which city do you mean?"
        answer = user_message("Lyon", message_id="m-2", task_id=task.id,
                              context_id=task.context_id)
        [second] = await collect(client.send_message(send_request(answer)))
    assert second.task.id == task.id
    assert second.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert "Lyon" in second.task.artifacts[0].parts[0].text
    assert [m.message_id for m in second.task.history] == ["m-1", "m-2"]


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_subscribe_follows_a_running_task(served: WebServer, binding: str) -> None:
    async with sdk_client(served.url, "helper", binding=binding) as client:
        events = await collect(client.send_message(send_request(user_message("ask me"))))
        task = events[0].task
        assert events[-1].status_update.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        follow = client.subscribe(SubscribeToTaskRequest(id=task.id))
        first = await anext(follow)
        assert first.task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        await follow.aclose()


async def test_malformed_requests_get_json_rpc_errors(served: WebServer) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "A2A-Version": "1.0"}
    async with httpx.AsyncClient(headers=headers) as http:
        async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
            response = await http.post(f"{served.url}a2a/helper", json={
                "jsonrpc": "2.0", "id": 7, "method": method, "params": params})
            body: dict[str, Any] = response.json()
            return body
        unknown = await call("NoSuchMethod", {})
        empty = await call("SendMessage", {"message": {"messageId": "x", "role": "ROLE_USER",
                                                       "parts": []}})
        missing = await call("GetTask", {"id": "t_missing"})
        no_id = await call("SendMessage", {"message": {"role": "ROLE_USER",
                                                       "parts": [{"text": "hi"}]}})
        other_task = await call("SendMessage", {"message": {
            "messageId": "y", "role": "ROLE_USER", "taskId": "t_nope",
            "parts": [{"text": "hi"}]}})
        done = await call("SendMessage", {"message": {"messageId": "z", "role": "ROLE_USER",
                                                      "parts": [{"text": "Capital?"}]}})
        task = done["result"]["task"]
        wrong_context = await call("SendMessage", {"message": {
            "messageId": "z2", "role": "ROLE_USER", "taskId": task["id"],
            "contextId": "another", "parts": [{"text": "hi"}]}})
        finished = await call("SendMessage", {"message": {
            "messageId": "z3", "role": "ROLE_USER", "taskId": task["id"],
            "parts": [{"text": "more"}]}})
        subscribe_finished = await call("SubscribeToTask", {"id": task["id"]})
    assert no_id["error"]["code"] == -32602
    assert other_task["error"]["code"] == -32001  # TaskNotFoundError
    assert wrong_context["error"]["code"] == -32602
    assert finished["error"]["code"] == -32004  # UnsupportedOperationError: terminal
    assert subscribe_finished["error"]["code"] == -32004  # nothing more will happen
    assert unknown["error"]["code"] == -32601
    assert empty["error"]["code"] == -32602
    assert missing["error"]["code"] == -32001


async def test_push_notifications_reach_a_receiver(served: WebServer) -> None:
    """The caller registers a URL with its message; each state change is POSTed there
    with the caller's token, ending with the completed task."""
    import asyncio

    from a2a.types import TaskPushNotificationConfig
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from interop_support import serve_app

    received: list[tuple[str | None, dict[str, Any]]] = []
    arrived = asyncio.Event()

    async def receive(request: Request) -> Response:
        received.append((request.headers.get("x-a2a-notification-token"),
                         await request.json()))
        arrived.set()
        return Response(status_code=204)

    async with serve_app(Starlette(routes=[Route("/hook", receive, methods=["POST"])])
                         ) as hook:
        async with sdk_client(served.url, "helper", streaming=False) as client:
            request = send_request(user_message("Capital?"), return_immediately=True)
            request.configuration.task_push_notification_config.CopyFrom(
                TaskPushNotificationConfig(url=f"{hook}/hook",
                                           token="secret-1"))
            [sent] = await collect(client.send_message(request))

        def completed() -> bool:
            return any(body["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
                       for _, body in received)

        while not completed():
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 30)
        assert all(token == "secret-1" for token, _ in received)
        assert {body["task"]["id"] for _, body in received} == {sent.task.id}


async def test_a_v0_3_client_is_still_served(served: WebServer) -> None:
    """No A2A-Version header means 0.3 (the spec's rule): the old method names work."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=30) as http:
        response = await http.post(f"{served.url}a2a/helper", json={
            "jsonrpc": "2.0", "id": "x", "method": "message/send", "params": {"message": {
                "messageId": "old-1", "role": "user",
                "parts": [{"kind": "text", "text": "Capital?"}]}}})
        body = response.json()
    assert body["result"]["kind"] == "task", body
    assert body["result"]["status"]["state"] == "completed"
    assert body["result"]["artifacts"][0]["parts"][0]["text"] == REPLY


async def test_public_agents_need_no_token_and_stay_on_loopback(
        make_runtime: RuntimeFactory, agent_def: AgentFactory) -> None:
    from wakeful.errors import WakefulError
    from wakeful.project.interop import A2AServerConfig

    runtime = await make_runtime([agent_def("helper", model="scripted:helper")],
                                 {"scripted:helper": helper_model()}, start=False)
    runtime.add_service(InteropService(A2AServerConfig(auth="none", expose=["helper"])))
    await runtime.start()
    with pytest.raises(WakefulError, match="loopback"):
        WebServer(runtime, TOKEN, host="0.0.0.0", port=0)
    server = await serve(runtime)
    try:
        async with sdk_client(server.url, "helper", streaming=False, token=None) as client:
            [response] = await collect(client.send_message(send_request(user_message("Hi"))))
        assert response.task.status.state == TaskState.TASK_STATE_COMPLETED
        async with httpx.AsyncClient() as http:
            card = (await http.get(
                f"{server.url}a2a/helper/.well-known/agent-card.json")).json()
        assert "securitySchemes" not in card
    finally:
        await server.stop()


async def test_a_context_id_alone_starts_a_new_task_in_that_context(
        served: WebServer) -> None:
    async with sdk_client(served.url, "helper", streaming=False) as client:
        [first] = await collect(client.send_message(send_request(user_message("Capital?"))))
        context = first.task.context_id
        follow_up = user_message("And of Italy?", message_id="m-2", context_id=context)
        [second] = await collect(client.send_message(send_request(follow_up)))
        listed = await client.list_tasks(ListTasksRequest(context_id=context))
    assert second.task.id != first.task.id and second.task.context_id == context
    assert {t.id for t in listed.tasks} == {first.task.id, second.task.id}
    record = await served.runtime.get_task(second.task.id)
    assert f"task {first.task.id} (done): {REPLY}" in record.instruction


async def test_a_task_run_by_another_worker(make_runtime: RuntimeFactory,
                                            agent_def: AgentFactory, db_path: Any) -> None:
    """The A2A server's process need not own the agent: another worker on the same
    store runs the task, and SendMessage still answers with its outcome."""
    definition = agent_def("helper", model="scripted:helper")
    owner = await make_runtime([definition], {"scripted:helper": helper_model()})
    assert owner.ownership.owns("helper")
    front = await make_runtime([definition], {"scripted:helper": helper_model()},
                               start=False)
    front.add_service(InteropService(serve_mcp=False))
    await front.start()
    assert not front.ownership.owns("helper")
    server = await serve(front)
    try:
        async with sdk_client(server.url, "helper", streaming=False) as client:
            [response] = await collect(client.send_message(send_request(
                user_message("Capital?"))))
        assert response.task.status.state == TaskState.TASK_STATE_COMPLETED
        assert response.task.artifacts[0].parts[0].text == REPLY
        assert (await owner.store.get_task(response.task.id)) is not None
    finally:
        await server.stop()
