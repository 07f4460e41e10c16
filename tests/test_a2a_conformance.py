"""A2A 1.0 conformance: the specification's MUSTs, checked with raw HTTP requests (no
SDK client in between), on JSON-RPC and HTTP+JSON. Each test names its section of the
specification (a2aproject/A2A docs/specification.md, 1.0)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest

from test_a2a_server import REPLY, served  # noqa: F401  (the served team fixture)
from wakeful.server import WebServer
from web_support import TOKEN

HEADERS = {"Authorization": f"Bearer {TOKEN}", "A2A-Version": "1.0"}
_ids = itertools.count(1)

# A2A error codes on JSON-RPC (spec §9.5) and their HTTP statuses (spec §11.6).
TASK_NOT_FOUND, TASK_NOT_CANCELABLE, PUSH_NOT_SUPPORTED = -32001, -32002, -32003
UNSUPPORTED_OPERATION, VERSION_NOT_SUPPORTED = -32004, -32009
INVALID_PARAMS, METHOD_NOT_FOUND, INVALID_REQUEST, PARSE_ERROR = -32602, -32601, -32600, -32700


class Raw:
    """JSON-RPC and HTTP+JSON calls to one agent, as plain HTTP."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base

    async def rpc(self, method: str, params: dict[str, Any] | None = None, *,
                  headers: dict[str, str] | None = None) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or {}}
        response = await self.http.post(self.base, json=body, headers=headers or HEADERS)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        data: dict[str, Any] = response.json()
        assert data["jsonrpc"] == "2.0" and data["id"] == body["id"]
        return data

    async def error(self, method: str, params: dict[str, Any] | None = None, **kw: Any
                    ) -> dict[str, Any]:
        data = await self.rpc(method, params, **kw)
        assert "error" in data and "result" not in data, data
        error: dict[str, Any] = data["error"]
        assert isinstance(error["code"], int) and error["message"], error
        return error

    async def send(self, text: str, **message: Any) -> dict[str, Any]:
        """SendMessage (blocking); the task it answers with."""
        data = await self.rpc("SendMessage", {"message": {
            "messageId": f"m-{next(_ids)}", "role": "ROLE_USER", "parts": [{"text": text}],
            **message}})
        assert "result" in data, data
        task: dict[str, Any] = data["result"]["task"]
        return task


@pytest.fixture
async def raw(served: WebServer) -> Any:  # noqa: F811
    async with httpx.AsyncClient(timeout=60) as http:
        yield Raw(http, f"{served.url}a2a/helper")


# §3.1.3, §3.3.2, §9.5: an unknown task is TaskNotFoundError (-32001) --------------
async def test_unknown_task_is_task_not_found(raw: Raw) -> None:
    for method in ("GetTask", "CancelTask"):
        assert (await raw.error(method, {"id": "no-such-task"}))["code"] == TASK_NOT_FOUND
    # §3.4.2: a message naming a task that does not exist
    error = await raw.error("SendMessage", {"message": {
        "messageId": "m-x", "role": "ROLE_USER", "parts": [{"text": "hi"}],
        "taskId": "no-such-task"}})
    assert error["code"] == TASK_NOT_FOUND


# §3.1.5: cancelling a task in a terminal state is TaskNotCancelableError ---------------
async def test_cancelling_a_finished_task_is_not_cancelable(raw: Raw) -> None:
    task = await raw.send("What is the capital of France?")
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    error = await raw.error("CancelTask", {"id": task["id"]})
    assert error["code"] == TASK_NOT_CANCELABLE


# §3.1.1: a message to a task in a terminal state is UnsupportedOperationError -------
async def test_a_message_to_a_finished_task_is_unsupported(raw: Raw) -> None:
    task = await raw.send("What is the capital of France?")
    error = await raw.error("SendMessage", {"message": {
        "messageId": "m-late", "role": "ROLE_USER", "parts": [{"text": "and Spain?"}],
        "taskId": task["id"]}})
    assert error["code"] == UNSUPPORTED_OPERATION


# §3.4.3: a contextId that differs from the task's is rejected ----------------------
async def test_a_mismatched_context_is_rejected(raw: Raw) -> None:
    task = await raw.send("ask me")  # waits for input: not terminal
    assert task["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    error = await raw.error("SendMessage", {"message": {
        "messageId": "m-ctx", "role": "ROLE_USER", "parts": [{"text": "Paris"}],
        "taskId": task["id"], "contextId": "some-other-context"}})
    assert error["code"] == INVALID_PARAMS
    # §3.4.3: the context is inferred from the task when only taskId is given
    done = await raw.send("Paris", taskId=task["id"])
    assert done["contextId"] == task["contextId"] and "Paris" in str(done)


# §3.1.6: subscribing to a task in a terminal state is UnsupportedOperationError -----
async def test_subscribing_to_a_finished_task_is_unsupported(raw: Raw) -> None:
    task = await raw.send("What is the capital of France?")
    error = await raw.error("SubscribeToTask", {"id": task["id"]})
    assert error["code"] == UNSUPPORTED_OPERATION


# §9 / JSON-RPC 2.0: method names, invalid params, malformed requests ----------------
async def test_json_rpc_errors(raw: Raw) -> None:
    assert (await raw.error("message/send"))["code"] == METHOD_NOT_FOUND  # 0.3 name in 1.0
    assert (await raw.error("NoSuchMethod"))["code"] == METHOD_NOT_FOUND
    assert (await raw.error("GetTask", {"id": 42}))["code"] == INVALID_PARAMS
    assert (await raw.error("SendMessage", {}))["code"] == INVALID_PARAMS  # no message
    response = await raw.http.post(raw.base, content=b"{not json", headers=HEADERS)
    assert response.json()["error"]["code"] == PARSE_ERROR
    response = await raw.http.post(raw.base, json={"id": 1, "method": "GetTask"},
                                   headers=HEADERS)
    assert response.json()["error"]["code"] == INVALID_REQUEST


# §3.3.2 validation errors: a message without parts, role or id is invalid -------------
@pytest.mark.parametrize("message", [
    {"messageId": "m-1", "role": "ROLE_USER", "parts": []},
    {"messageId": "m-1", "parts": [{"text": "hi"}]},
    {"role": "ROLE_USER", "parts": [{"text": "hi"}]},
], ids=["no-parts", "no-role", "no-message-id"])
async def test_an_incomplete_message_is_invalid_params(raw: Raw,
                                                       message: dict[str, Any]) -> None:
    assert (await raw.error("SendMessage", {"message": message}))["code"] == INVALID_PARAMS


# §3.6.2: an unsupported A2A-Version is VersionNotSupportedError -----------------------
async def test_an_unsupported_version_is_refused(raw: Raw) -> None:
    headers = {**HEADERS, "A2A-Version": "9.9"}
    error = await raw.error("GetTask", {"id": "whatever"}, headers=headers)
    assert error["code"] == VERSION_NOT_SUPPORTED


# §4.1 required fields of Task, TaskStatus, Message, Artifact, Part ---------------------
async def test_a_task_has_its_required_fields(raw: Raw) -> None:
    task = await raw.send("What is the capital of France?")
    assert task["id"] and task["contextId"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED" and task["status"]["timestamp"]
    for message in task.get("history", []):
        assert message["messageId"] and message["role"] in ("ROLE_USER", "ROLE_AGENT")
        assert message["parts"]
    assert task["artifacts"]
    for artifact in task["artifacts"]:
        assert artifact["artifactId"] and artifact["parts"]
    assert REPLY in str(task["artifacts"])


# §3.2.4: historyLength ----------------------------------------------------------------
async def test_history_length(raw: Raw) -> None:
    task = await raw.send("What is the capital of France?")
    full = (await raw.rpc("GetTask", {"id": task["id"]}))["result"]
    assert len(full["history"]) >= 1
    none = (await raw.rpc("GetTask", {"id": task["id"], "historyLength": 0}))["result"]
    assert "history" not in none or none["history"] == []
    one = (await raw.rpc("GetTask", {"id": task["id"], "historyLength": 1}))["result"]
    assert len(one["history"]) == 1 and one["history"][0] == full["history"][-1]


# §3.1.4: ListTasks pagination, order, artifacts omitted by default ----------------------
async def test_list_tasks_pages_newest_first(raw: Raw) -> None:
    made = [(await raw.send(f"What is the capital of France? #{n}"))["id"] for n in range(3)]
    first = (await raw.rpc("ListTasks", {"pageSize": 2}))["result"]
    assert [t["id"] for t in first["tasks"]] == made[::-1][:2]  # newest update first
    assert first["pageSize"] == 2 and first["totalSize"] == 3
    assert first["nextPageToken"]
    assert all("artifacts" not in t for t in first["tasks"])  # includeArtifacts false
    last = (await raw.rpc("ListTasks", {"pageSize": 2, "pageToken": first["nextPageToken"],
                                        "includeArtifacts": True}))["result"]
    assert [t["id"] for t in last["tasks"]] == made[:1]
    assert last["nextPageToken"] == ""  # MUST be present, empty on the last page
    assert last["tasks"][0]["artifacts"]
    bad = await raw.error("ListTasks", {"pageToken": "not-a-token"})
    assert bad["code"] == INVALID_PARAMS


# §3.1.7-3.1.10: push configs: unknown task, missing config, idempotent delete ---------
async def test_push_config_operations(raw: Raw) -> None:
    missing = {"taskId": "no-such-task", "url": "http://127.0.0.1:9/hook"}
    assert (await raw.error("CreateTaskPushNotificationConfig", missing))["code"] \
        == TASK_NOT_FOUND
    assert (await raw.error("ListTaskPushNotificationConfigs", {"taskId": "no-such-task"})
            )["code"] == TASK_NOT_FOUND
    task = await raw.send("ask me")  # waiting for input: configs still matter
    made = (await raw.rpc("CreateTaskPushNotificationConfig", {
        "taskId": task["id"], "url": "http://127.0.0.1:9/hook", "token": "t"}))["result"]
    assert made["id"] and made["taskId"] == task["id"]
    got = (await raw.rpc("GetTaskPushNotificationConfig",
                         {"taskId": task["id"], "id": made["id"]}))["result"]
    assert got["url"] == "http://127.0.0.1:9/hook"
    listed = (await raw.rpc("ListTaskPushNotificationConfigs", {"taskId": task["id"]})
              )["result"]
    assert [c["id"] for c in listed["configs"]] == [made["id"]]
    for _ in range(2):  # MUST be idempotent: the second delete is no error either
        deleted = await raw.rpc("DeleteTaskPushNotificationConfig",
                                {"taskId": task["id"], "id": made["id"]})
        assert "error" not in deleted, deleted
    gone = await raw.error("GetTaskPushNotificationConfig",
                           {"taskId": task["id"], "id": made["id"]})
    assert gone["code"] == TASK_NOT_FOUND  # §3.1.8: the config does not exist


# §3.1.11, §3.3.4: no extended card declared -> UnsupportedOperationError -------------
async def test_extended_card_not_declared(raw: Raw, served: WebServer) -> None:  # noqa: F811
    card = (await raw.http.get(
        f"{served.url}a2a/helper/.well-known/agent-card.json")).json()
    assert not card["capabilities"].get("extendedAgentCard")
    error = await raw.error("GetExtendedAgentCard")
    assert error["code"] == UNSUPPORTED_OPERATION


# §4.4.1: the agent card's required fields ----------------------------------------------
async def test_the_card_has_its_required_fields(raw: Raw, served: WebServer) -> None:  # noqa: F811
    card = (await raw.http.get(
        f"{served.url}a2a/helper/.well-known/agent-card.json")).json()
    for field in ("name", "description", "version", "supportedInterfaces", "capabilities",
                  "defaultInputModes", "defaultOutputModes", "skills"):
        assert card.get(field) not in (None, ""), field
    for interface in card["supportedInterfaces"]:
        assert interface["url"] and interface["protocolBinding"]
        assert interface["protocolVersion"] == "1.0"
    for skill in card["skills"]:
        assert skill["id"] and skill["name"] and skill["description"] and skill["tags"]
    # the declared scheme is required by the card (security requirements)
    assert card["securitySchemes"] and card["securityRequirements"]


# §11: HTTP+JSON binding: URLs, verbs, statuses, error format ---------------------------
async def test_http_json_binding(raw: Raw) -> None:
    http, base = raw.http, raw.base
    sent = await http.post(f"{base}/message:send", headers=HEADERS, json={"message": {
        "messageId": "m-rest", "role": "ROLE_USER", "parts": [{"text": "capital?"}]}})
    # §11.1: application/a2a+json SHOULD be used (HTTP+JSON; JSON-RPC keeps application/json)
    assert sent.status_code == 200 and sent.headers["content-type"].startswith(
        "application/a2a+json")
    task = sent.json()["task"]
    got = await http.get(f"{base}/tasks/{task['id']}", headers=HEADERS)
    assert got.status_code == 200 and got.json()["id"] == task["id"]
    listed = await http.get(f"{base}/tasks", headers=HEADERS, params={"pageSize": 1})
    assert listed.status_code == 200 and "nextPageToken" in listed.json()
    missing = await http.get(f"{base}/tasks/no-such-task", headers=HEADERS)
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"  # google.rpc.Status shape
    refused = await http.post(f"{base}/tasks/{task['id']}:cancel", headers=HEADERS)
    # §5.4: 400 in the 1.0 text, 409 in later drafts; ErrorInfo says which error it is
    assert refused.status_code in (400, 409)
    details = refused.json()["error"]["details"]
    assert any(d.get("reason") == "TASK_NOT_CANCELABLE" and d["domain"] == "a2a-protocol.org"
               and d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
               for d in details), details
    bad = await http.post(f"{base}/message:send", headers=HEADERS, json={"message": {}})
    assert bad.status_code == 400
    version = await http.get(f"{base}/tasks/{task['id']}",
                             headers={**HEADERS, "A2A-Version": "9.9"})
    assert version.status_code == 400
    wrong_verb = await http.get(f"{base}/message:send", headers=HEADERS)
    assert wrong_verb.status_code == 405


# §3.1.2, §3.3.1 (JSON-RPC streaming): SSE of JSON-RPC responses, Task first, closed at
# the terminal state ----------------------------------------------------------------------
async def test_streaming_starts_with_the_task_and_ends_at_its_end(raw: Raw) -> None:
    body = {"jsonrpc": "2.0", "id": 7, "method": "SendStreamingMessage", "params": {
        "message": {"messageId": "m-stream", "role": "ROLE_USER",
                    "parts": [{"text": "capital?"}]}}}
    events = []
    async with raw.http.stream("POST", raw.base, json=body, headers=HEADERS) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    assert all(e["jsonrpc"] == "2.0" and e["id"] == 7 and "result" in e for e in events)
    results = [e["result"] for e in events]
    assert "task" in results[0]  # MUST begin with the Task
    task_id = results[0]["task"]["id"]
    updates = [r["statusUpdate"] for r in results[1:] if "statusUpdate" in r]
    assert all(u["taskId"] == task_id for u in updates)
    assert updates[-1]["status"]["state"] == "TASK_STATE_COMPLETED"  # closed after it
    assert not any("statusUpdate" in r or "task" in r
                   for r in results[results.index({"statusUpdate": updates[-1]}) + 1:])


async def test_cards_need_no_token_but_calls_do(raw: Raw, served: WebServer  # noqa: F811
                                                ) -> None:
    card = await raw.http.get(f"{served.url}a2a/helper/.well-known/agent-card.json")
    assert card.status_code == 200
    response = await raw.http.post(raw.base, json={
        "jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}},
        headers={"A2A-Version": "1.0"})
    assert response.status_code == 401 and "Bearer" in response.headers["www-authenticate"]

