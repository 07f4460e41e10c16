"""The HTTP API, over ASGI (httpx) against a real runtime on a real SQLite file:
every endpoint, the token on every one of them, and bad input (401, 404, 422 with the
field, 413). The live stream and the server itself are in test_web_stream.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from wakeful.models.scripted import ScriptedModel
from wakeful.runtime.runtime import Runtime
from wakeful.server import create_app
from web_support import SLOW_JOB, TEAM, TOKEN, answering_model, team

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory, WaitUntil

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory, agent_def: AgentFactory) -> Runtime:
    built = team(agent_def, token_delay_ms=1, latency_ms=5)
    locker = ScriptedModel.from_steps([
        {"say": "Locking.", "tool_calls": [{"tool": "acquire_lock",
                                            "args": {"resource": "kv:plan", "lease_s": 60}}]},
        {"say": "Holding it.", "latency_ms": 60_000}])
    agents = [*built.agents, agent_def("locker", model="scripted:locker",
                                        tools=["acquire_lock"])]
    return await make_runtime(agents, {**built.models, "scripted:locker": locker})


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime, TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                 headers=AUTH) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["status"] == status
    message: str = body["error"]
    return message


def fields_of(response: httpx.Response) -> list[str]:
    error_of(response, 422)
    return [f["field"] for f in response.json()["fields"]]


# auth -----------------------------------------------------------------------
def _api_routes(runtime: Runtime) -> list[tuple[str, str]]:
    app = create_app(runtime, TOKEN)
    fill = {"{name}": "writer", "{task_id}": "t_x", "{mail_id}": "m_x", "{agent}": "writer",
            "{member}": "person:ada", "{rest:path}": "nothing"}
    found = [("GET", "/api/openapi.json"), ("GET", "/api/nothing"), ("POST", "/api/nothing")]
    for path, operations in app.openapi()["paths"].items():
        for key, value in fill.items():
            path = path.replace(key, value)
        found.extend((method.upper(), path) for method in operations)
    return found


async def test_every_api_route_needs_the_token(runtime: Runtime) -> None:
    routes = _api_routes(runtime)
    assert len(routes) >= 30
    app = create_app(runtime, TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as anonymous:
        for method, path in routes:
            missing = await anonymous.request(method, path, json={})
            assert "missing API token" in error_of(missing, 401), (method, path)
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = await anonymous.request(method, path, json={},
                                            headers={"Authorization": "Bearer nope-nope"})
            assert error_of(wrong, 401) == "wrong API token", (method, path)
            basic = await anonymous.request(method, path, headers={"Authorization": "Basic x"})
            assert basic.status_code == 401
    # The UI itself loads without a token (it holds the login form).
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as anonymous:
        page = await anonymous.get("/")
        assert page.status_code == 200 and 'id="login-form"' in page.text
        script = await anonymous.get("/static/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]


async def test_the_openapi_schema_lists_every_resource(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/openapi.json")).json()
    paths = set(schema["paths"])
    for expected in ("/api/agents", "/api/agents/{name}", "/api/agents/{name}/pause",
                     "/api/agents/{name}/wake", "/api/tasks", "/api/tasks/{task_id}/cancel",
                     "/api/mail", "/api/mail/{mail_id}", "/api/conversations/{agent}",
                     "/api/channels", "/api/channels/{name}/posts", "/api/locks",
                     "/api/events", "/api/status"):
        assert expected in paths, expected
    assert "NewTask" in schema["components"]["schemas"]


async def test_unknown_endpoints_are_404(client: httpx.AsyncClient) -> None:
    assert "no such endpoint: GET /api/nothing" in error_of(await client.get("/api/nothing"), 404)
    assert error_of(await client.post("/api/agents/writer/dance"), 404)


# agents -----------------------------------------------------------------------
async def test_agents_list_and_one_agents_page(client: httpx.AsyncClient,
                                               runtime: Runtime) -> None:
    agents = (await client.get("/api/agents")).json()["agents"]
    assert sorted(a["name"] for a in agents) == sorted([*TEAM, "locker"])
    writer = next(a for a in agents if a["name"] == "writer")
    assert writer["state"] == "running" and writer["role"] == "the writer"
    assert writer["max_concurrent_tasks"] == 3 and writer["next_wake"] is None

    page = (await client.get("/api/agents/writer")).json()
    assert page["definition"]["model"] == "scripted:writer"
    assert set(page) >= {"why", "usage", "locks", "timers", "channels", "definition"}
    assert page["usage"]["tasks"] == 0

    await runtime.create_task("writer", "say something")
    await runtime.wait_idle(10)
    page = (await client.get("/api/agents/writer")).json()
    assert page["usage"]["tasks"] == 1 and page["usage"]["output_tokens"] > 0
    timeline = (await client.get("/api/agents/writer/timeline?limit=500")).json()["events"]
    types = [e["type"] for e in timeline]
    assert "task.created" in types and "model.call" in types
    assert all(e["agent"] == "writer" for e in timeline)
    later = (await client.get(f"/api/agents/writer/timeline?after_id={timeline[-1]['id']}"))
    assert later.json()["events"] == []


async def test_agent_controls_change_its_state(client: httpx.AsyncClient,
                                               runtime: Runtime) -> None:
    for action, state in (("pause", "paused"), ("resume", "running"), ("sleep", "sleeping"),
                          ("wake", "running"), ("stop", "stopped"), ("start", "running"),
                          ("restart", "running")):
        response = await client.post(f"/api/agents/critic/{action}")
        assert response.status_code == 200, response.text
        assert response.json()["state"] == state, action
        assert runtime.agent("critic").state.value == state
    asleep = await client.post("/api/agents/critic/sleep", json={"reason": "night shift"})
    assert asleep.json()["reason"] == "night shift"
    # Not allowed from here: 409 with what is allowed.
    await client.post("/api/agents/critic/stop")
    message = error_of(await client.post("/api/agents/critic/pause"), 409)
    assert "cannot go from 'stopped' to 'paused'" in message and "may go to: running" in message
    assert runtime.agent("critic").state.value == "stopped"


async def test_unknown_agents_are_404_everywhere(client: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/api/agents/nobody"), ("GET", "/api/agents/nobody/timeline"),
                         ("GET", "/api/agents/nobody/mail"), ("POST", "/api/agents/nobody/pause"),
                         ("POST", "/api/agents/nobody/wake"), ("GET", "/api/tasks?agent=nobody"),
                         ("GET", "/api/conversations/nobody"), ("GET", "/api/locks?agent=nobody"),
                         ("GET", "/api/events?agent=nobody")):
        message = error_of(await client.request(method, path), 404)
        assert "unknown agent 'nobody'" in message and "writer" in message, path
    response = await client.post("/api/tasks", json={"agent": "nobody", "instruction": "x"})
    assert "unknown agent 'nobody'" in error_of(response, 404)


async def test_malformed_query_parameters_name_the_parameter(client: httpx.AsyncClient) -> None:
    assert fields_of(await client.get("/api/tasks?state=sleepy")) == ["query.state"]
    assert fields_of(await client.get("/api/events?limit=0")) == ["query.limit"]
    assert fields_of(await client.get("/api/agents/writer/timeline?limit=abc")) == ["query.limit"]


# tasks ------------------------------------------------------------------------
async def test_start_read_and_cancel_tasks(client: httpx.AsyncClient, runtime: Runtime,
                                           wait_until: WaitUntil) -> None:
    created = await client.post("/api/tasks", json={"agent": "researcher",
                                                    "instruction": "Look things up",
                                                    "created_by": "ada"})
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["state"] == "queued" and task["created_by"] == "person:ada"
    await runtime.wait_task(task["id"], 10)
    done = (await client.get(f"/api/tasks/{task['id']}")).json()
    assert done["state"] == "done" and done["result"] == TEAM["researcher"]
    assert [m["role"] for m in done["messages"]] == ["system", "user", "assistant"]
    assert "messages" not in (await client.get(f"/api/tasks/{task['id']}?messages=false")).json()
    events = (await client.get(f"/api/tasks/{task['id']}/events")).json()["events"]
    assert {"task.created", "task.state", "model.call"} <= {e["type"] for e in events}

    slow = (await client.post("/api/tasks", json={"agent": "researcher",
                                                 "instruction": f"A {SLOW_JOB}"})).json()
    await wait_until(lambda: runtime.agent("researcher").running_tasks, what="slow task runs")
    listed = (await client.get("/api/tasks?agent=researcher&state=running")).json()
    assert [t["id"] for t in listed["tasks"]] == [slow["id"]]
    assert listed["tasks"][0]["max_steps"] == 50
    cancelled = await client.post(f"/api/tasks/{slow['id']}/cancel")
    assert cancelled.json()["state"] == "cancelled"
    # Cancelling what has ended is refused: 409.
    message = error_of(await client.post(f"/api/tasks/{task['id']}/cancel"), 409)
    assert "from 'done'" in message
    everything = (await client.get("/api/tasks?limit=1")).json()
    assert everything["total"] == 2 and len(everything["tasks"]) == 1


async def test_bad_task_requests(client: httpx.AsyncClient) -> None:
    assert "unknown task 't_nope'" in error_of(await client.get("/api/tasks/t_nope"), 404)
    assert error_of(await client.post("/api/tasks/t_nope/cancel"), 404)
    assert error_of(await client.get("/api/tasks/t_nope/events"), 404)
    assert fields_of(await client.post("/api/tasks", json={"agent": "writer"})) == [
        "body.instruction"]
    assert fields_of(await client.post("/api/tasks", json={"agent": "writer",
                                                           "instruction": "  "})) == [
        "body.instruction"]
    assert fields_of(await client.post("/api/tasks", json={
        "agent": "writer", "instruction": "x", "priority": 3})) == ["body.priority"]
    assert fields_of(await client.post("/api/tasks", json={
        "agent": "writer", "instruction": 42})) == ["body.instruction"]
    assert fields_of(await client.post("/api/tasks", json={
        "agent": "writer", "instruction": "x", "created_by": "#team"})) == ["body.created_by"]
    broken = await client.post("/api/tasks", content=b"{not json",
                               headers={"Content-Type": "application/json"})
    assert fields_of(broken) == ["body.1"]
    assert "JSON" in broken.json()["error"]
    big = await client.post("/api/tasks", json={"agent": "writer", "instruction": "x" * 100_001})
    assert "100,000" in error_of(big, 413)
    huge = await client.post("/api/tasks", content=b"x" * (1024 * 1024 + 1),
                             headers={"Content-Type": "application/json"})
    assert "request body too large" in error_of(huge, 413)


# mail -------------------------------------------------------------------------
async def test_a_person_mails_an_agent_and_reads_the_answer(
    client: httpx.AsyncClient, runtime: Runtime, wait_until: WaitUntil
) -> None:
    sent = await client.post("/api/mail", json={"sender": "ada", "to": "writer",
                                                "body": "Hello there"})
    assert sent.status_code == 201, sent.text
    mail = sent.json()["mail"]
    assert mail["sender"] == "person:ada" and sent.json()["delivered_to"] == 1

    async def answered() -> bool:
        found = (await client.get("/api/conversations/writer?person=ada")).json()["mail"]
        return len(found) == 2

    await wait_until(answered, within=10, what="the writer's answer")
    conversation = (await client.get("/api/conversations/writer?person=person:ada")).json()
    question, answer = conversation["mail"]
    assert question["id"] == mail["id"] and answer["sender"] == "writer"
    assert answer["in_reply_to"] == mail["id"] and answer["payload"]["in_reply_to"] == mail["id"]
    task = (await client.get(f"/api/tasks/{answer['payload']['task_id']}")).json()
    assert task["created_by"] == "person:ada" and task["cause_id"] == mail["id"]

    shown = (await client.get(f"/api/mail/{answer['id']}")).json()
    assert shown["mail"]["body"] == answer["body"]
    assert [d["owner"] for d in shown["deliveries"]] == ["person:ada"]
    assert shown["deliveries"][0]["status"] != "acked"
    read = (await client.get(f"/api/mail/{answer['id']}?reader=ada")).json()
    assert read["mail"]["read_at"] is not None
    # its place in the conversation, as the page needs to tell it from older mail
    assert read["mail"]["seq"] == answer["seq"] is not None
    assert (await client.get(f"/api/mail/{answer['id']}")).json()["deliveries"][0][
        "status"] == "acked"
    await client.post("/api/mail", json={"sender": "ada", "to": "writer", "body": "Again"})
    await wait_until(lambda: _len_is(_conversation(client), 4), within=10, what="answer 2")
    unread = (await client.get("/api/mail?owner=person:ada&status=pending")).json()["mail"]
    assert len(unread) == 1 and unread[0]["body"] == TEAM["writer"]
    await client.get("/api/conversations/writer?person=ada&mark_read=true")
    for status in ("pending", "delivered"):
        assert (await client.get(f"/api/mail?owner=person:ada&status={status}")).json()[
            "mail"] == []
    listed = (await client.get("/api/mail?owner=writer")).json()["mail"]
    assert listed[0]["id"] == mail["id"] and len(listed) == 2
    agent_mail = (await client.get("/api/agents/writer/mail")).json()
    assert agent_mail["inbox"][0]["id"] == mail["id"]
    assert agent_mail["sent"][0]["id"] == answer["id"]


async def test_bad_mail(client: httpx.AsyncClient, runtime: Runtime) -> None:
    assert "no mail with id 'm_nope'" in error_of(await client.get("/api/mail/m_nope"), 404)
    assert fields_of(await client.post("/api/mail", json={"to": "not an address!",
                                                          "body": "x"})) == ["body.to"]
    assert fields_of(await client.post("/api/mail", json={"sender": "writer/t_1",
                                                          "to": "writer", "body": "x"})) == [
        "body.sender"]
    assert fields_of(await client.post("/api/mail", json={"body": "x"})) == ["body.to"]
    assert fields_of(await client.post("/api/mail", json={"to": "writer", "body": "x",
                                                          "priority": "asap"})) == [
        "body.priority"]
    empty = await client.post("/api/mail", json={"to": "writer"})
    assert "is empty" in error_of(empty, 422)
    limit = runtime.mailbox.config.max_body_chars
    big = await client.post("/api/mail", json={"to": "writer", "body": "x" * (limit + 1)})
    message = error_of(big, 413)
    assert f"{limit:,}" in message and "mailbox.max_body_chars" in message
    to_nobody = await client.post("/api/mail", json={"to": "nobody", "body": "x"})
    assert "unknown agent 'nobody'" in error_of(to_nobody, 404)
    bad_person = await client.get("/api/conversations/writer?person=%23x")
    assert "query.person" in error_of(bad_person, 422)


# channels ---------------------------------------------------------------------
async def test_channels_posts_members_and_unread(client: httpx.AsyncClient, runtime: Runtime,
                                                 wait_until: WaitUntil) -> None:
    created = await client.post("/api/channels", json={
        "name": "launch", "members": ["writer", "critic"], "topic": "the plan",
        "created_by": "ada"})
    assert created.status_code == 201, created.text
    assert sorted(created.json()["members"]) == ["critic", "person:ada", "writer"]
    assert (await client.get("/api/channels/%23launch")).json()["topic"] == "the plan"

    posted = await client.post("/api/channels/launch/posts", json={"sender": "ada",
                                                                  "body": "Ready?"})
    assert posted.status_code == 201 and posted.json()["delivered_to"] == 2

    async def answers() -> list[dict[str, Any]]:
        found = (await client.get("/api/channels/launch/posts")).json()["posts"]
        return [p for p in found if not p["sender"].startswith("person:")]

    await wait_until(lambda: _len_is(answers(), 2), within=10, what="two answers")
    senders = sorted(p["sender"] for p in await answers())
    assert senders == ["critic", "writer"]
    unread = (await client.get("/api/channels?member=person:ada")).json()["channels"]
    assert unread[0]["name"] == "launch" and unread[0]["unread"] == 2
    marked = await client.post("/api/channels/launch/read", json={"member": "person:ada"})
    assert marked.json()["unread"] == 0
    unread = (await client.get("/api/channels?member=person:ada")).json()["channels"]
    assert unread[0]["unread"] == 0

    # A person who is not a member may not post, unless they join.
    outsider = await client.post("/api/channels/launch/posts", json={"sender": "bob",
                                                                    "body": "hi"})
    assert "not a member of #launch" in error_of(outsider, 403)
    joined = await client.post("/api/channels/launch/posts", json={"sender": "bob",
                                                                  "body": "hi", "join": True})
    assert joined.status_code == 201
    added = await client.post("/api/channels/launch/members", json={"members": ["researcher"]})
    assert added.json()["added"] == ["researcher"]
    removed = await client.delete("/api/channels/launch/members/researcher")
    assert "researcher" not in removed.json()["members"]
    again = await client.delete("/api/channels/launch/members/researcher")
    assert "is not a member" in error_of(again, 404)
    older = (await client.get("/api/channels/launch/posts?limit=1")).json()["posts"]
    before = (await client.get(f"/api/channels/launch/posts?before_seq={older[0]['seq']}"))
    assert all(p["seq"] < older[0]["seq"] for p in before.json()["posts"])


async def _len_is(found: Any, n: int) -> bool:
    return len(await found) == n


async def _conversation(client: httpx.AsyncClient) -> list[Any]:
    found: list[Any] = (await client.get("/api/conversations/writer?person=ada")).json()["mail"]
    return found


async def test_bad_channel_requests(client: httpx.AsyncClient) -> None:
    await client.post("/api/channels", json={"name": "team"})
    assert "already exists" in error_of(await client.post("/api/channels",
                                                          json={"name": "team"}), 422)
    assert "invalid channel name" in error_of(await client.post("/api/channels",
                                                                json={"name": "Bad Name"}), 422)
    bad_member = await client.post("/api/channels", json={"name": "x", "members": ["#y"]})
    assert fields_of(bad_member) == ["body.members"]
    assert "member 0" in bad_member.json()["error"]
    ghost = await client.post("/api/channels", json={"name": "x", "members": ["ghost"]})
    assert "unknown agent 'ghost'" in error_of(ghost, 404)
    for method, path in (("GET", "/api/channels/nope"), ("GET", "/api/channels/nope/posts"),
                         ("POST", "/api/channels/nope/posts"),
                         ("POST", "/api/channels/nope/members"),
                         ("POST", "/api/channels/nope/read")):
        body = {"posts": {"body": "x"}, "members": {"members": ["writer"]},
                "read": {}}.get(path.rsplit("/", 1)[-1])
        message = error_of(await client.request(method, path, json=body), 404)
        assert "unknown channel '#nope'" in message and "#team" in message, path
    assert fields_of(await client.post("/api/channels/team/posts", json={"body": ""})) == [
        "body.body"]
    assert fields_of(await client.post("/api/channels/team/members", json={"members": []})) == [
        "body.members"]


# locks, events, status --------------------------------------------------------
async def test_locks_show_who_holds_what(client: httpx.AsyncClient, runtime: Runtime,
                                         wait_until: WaitUntil) -> None:
    assert (await client.get("/api/locks")).json()["locks"] == []
    await runtime.create_task("locker", "lock the plan")

    async def held() -> bool:
        return bool((await client.get("/api/locks")).json()["locks"])

    await wait_until(held, within=10, what="the lock")
    view = (await client.get("/api/locks?agent=locker")).json()
    [lock] = view["locks"]
    assert lock["resource"] == "kv:plan" and lock["mode"] == "write"
    assert lock["agent"] == "locker" and lock["lease_left_s"] > 0
    assert (await client.get("/api/locks?agent=writer")).json()["locks"] == []
    page = (await client.get("/api/agents/locker")).json()
    assert [h["resource"] for h in page["locks"]["held"]] == ["kv:plan"]


async def test_events_and_status(client: httpx.AsyncClient, runtime: Runtime) -> None:
    record = await runtime.create_task("critic", "Review")
    await runtime.wait_task(record.id, 10)
    every = (await client.get("/api/events?limit=1000")).json()["events"]
    assert every[0]["type"] == "run.started"
    ids = [e["id"] for e in every]
    assert ids == sorted(ids)
    tasks_only = (await client.get("/api/events?type_prefix=task.&limit=1000")).json()["events"]
    assert tasks_only and all(e["type"].startswith("task.") for e in tasks_only)
    one_task = (await client.get(f"/api/events?task_id={record.id}")).json()["events"]
    assert {e["task_id"] for e in one_task} == {record.id}
    traced = (await client.get(f"/api/events?trace={record.trace_id}")).json()["events"]
    assert traced and all(e["trace"] == record.trace_id for e in traced)
    after = (await client.get(f"/api/events?after_id={ids[-2]}")).json()["events"]
    assert [e["id"] for e in after] == [ids[-1]]
    newest = (await client.get("/api/events?limit=2&newest=true")).json()["events"]
    assert [e["id"] for e in newest] == ids[-2:]
    status = (await client.get("/api/status")).json()
    assert status["run_id"] == runtime.run_id and status["agents"] == 4
    assert status["usage"]["calls"] >= 1 and status["agent_states"] == {"running": 4}


async def test_a_failing_endpoint_is_a_500_and_the_runtime_keeps_running(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> None:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(runtime.resources, "view", broken)
    app = create_app(runtime, TOKEN)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                 headers=AUTH) as fresh:
        response = await fresh.get("/api/locks")
        assert "the disk is on fire" in error_of(response, 500)
        record = await runtime.create_task("writer", "still working?")
        assert (await runtime.wait_task(record.id, 10)).state.value == "done"


def test_answering_model_streams_word_by_word() -> None:
    model = answering_model("w", "one two three")
    assert model.script.token_delay_ms == 20


async def test_a_sleeping_agent_shows_its_next_wake_and_timers(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    page = (await client.get("/api/agents/researcher")).json()
    assert page["next_wake"] is None and page["timers"] == []  # no timers: nothing shown
    await client.post("/api/agents/researcher/sleep", json={"reason": "until the next round"})
    page = (await client.get("/api/agents/researcher")).json()
    assert page["state"] == "sleeping" and page["next_wake"] is None  # asleep, no timer
    due = runtime.clock.now() + 3600
    await runtime.sleep_agent("researcher", "until the next round", until=due)
    page = (await client.get("/api/agents/researcher")).json()
    assert page["state"] == "sleeping" and page["next_wake"] == due
    [timer] = page["timers"]
    assert timer["action"] == "wake_agent" and timer["does"] == "wake agent researcher"
    assert timer["next_due_ts"] == due
    listed = (await client.get("/api/agents")).json()["agents"]
    assert {a["name"]: a["next_wake"] for a in listed}["writer"] is None
