"""The people-in-the-loop API over ASGI against a real runtime: list pending approvals
(with a diff for a file write), decide them (approve with edited arguments, deny with a
reason; a second decision is a 409), the inbox, and answering a question."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from approval_support import Make, call, pending_approval, people_runtime, steps
from polling import until
from wakeful.core.states import TaskState
from wakeful.runtime.runtime import Runtime
from wakeful.server import create_app
from web_support import TOKEN

__all__ = ["people_runtime"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def runtime(people_runtime: Make, tmp_path: Path) -> Runtime:
    (tmp_path / "workspace" / "docs").mkdir(parents=True)
    (tmp_path / "workspace" / "docs" / "plan.md").write_text("line one\nold line\n")
    writer = {"name": "writer", "model": "scripted:writer", "answer_mail": False,
              "tools": ["write_file", "ask_person"],
              "approval": [{"tools": ["write_file"], "approvers": ["person:ada"]}]}
    script = {"scripted:writer": steps(
        call("write_file", path="docs/plan.md", content="line one\nnew line\n"),
        {"say": "{last_tool_result}"})}
    asker = {"name": "asker", "model": "scripted:asker", "answer_mail": False,
             "tools": ["ask_person"]}
    ask = {"scripted:asker": steps(call("ask_person", question="Ready?"),
                                   {"say": "{last_tool_result}"})}
    return await people_runtime([writer, asker], {**script, **ask})


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime, TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                 headers=AUTH) as http:
        yield http


async def test_list_with_a_diff_then_approve_with_edited_arguments(
        runtime: Runtime, client: httpx.AsyncClient, tmp_path: Path) -> None:
    task = await runtime.create_task("writer", "edit the plan")
    approval = await pending_approval(runtime, task.id)
    listed = (await client.get("/api/approvals")).json()["approvals"]
    assert [a["id"] for a in listed] == [approval.id]
    view = listed[0]
    assert view["summary"] == "write_file(docs/plan.md)" and view["may_decide"] is True
    assert "-old line\n" in view["diff"] and "+new line\n" in view["diff"]
    answer = await client.post(f"/api/approvals/{approval.id}", json={
        "decision": "approve", "arguments": {"path": "docs/plan.md", "content": "edited\n"}})
    assert answer.status_code == 200, answer.text
    decided = answer.json()["approval"]
    assert decided["state"] == "approved" and decided["decided_by"] == "person:admin"
    assert (await runtime.wait_task(task.id, 10)).state is TaskState.DONE
    assert (tmp_path / "workspace" / "docs" / "plan.md").read_text() == "edited\n"
    again = await client.post(f"/api/approvals/{approval.id}", json={
        "decision": "deny", "reason": "too late"})
    assert again.status_code == 409 and "already approved by person:admin" in again.text
    assert (await client.get("/api/approvals")).json()["approvals"] == []
    every = (await client.get("/api/approvals", params={"state": "all"})).json()
    assert [a["state"] for a in every["approvals"]] == ["approved"]


async def test_deny_needs_a_reason_and_reaches_the_model(runtime: Runtime,
                                                         client: httpx.AsyncClient) -> None:
    task = await runtime.create_task("writer", "edit the plan")
    approval = await pending_approval(runtime, task.id)
    blank = await client.post(f"/api/approvals/{approval.id}", json={"decision": "deny"})
    assert blank.status_code == 422 and "reason" in blank.text
    bad = await client.post(f"/api/approvals/{approval.id}", json={"decision": "maybe"})
    assert bad.status_code == 422
    denied = await client.post(f"/api/approvals/{approval.id}", json={
        "decision": "deny", "reason": "keep the old line"})
    assert denied.status_code == 200
    done = await runtime.wait_task(task.id, 10)
    assert "Reason: keep the old line" in (done.result or "")
    missing = await client.post("/api/approvals/ap_nope", json={"decision": "approve"})
    assert missing.status_code == 404


async def test_the_inbox_holds_approvals_and_questions(runtime: Runtime,
                                                       client: httpx.AsyncClient) -> None:
    writing = await runtime.create_task("writer", "edit the plan")
    await pending_approval(runtime, writing.id)
    asking = await runtime.create_task("asker", "ask", created_by="person:ada")

    async def both() -> bool:
        box = (await client.get("/api/inbox")).json()
        return len(box["approvals"]) == 1 and len(box["questions"]) == 1

    await until(both, 10, "an approval and a question in the inbox")
    box = (await client.get("/api/inbox")).json()
    question = box["questions"][0]
    assert question["body"] == "Ready?" and question["recipient"] == "person:ada"
    ada = (await client.get("/api/inbox", params={"person": "ada"})).json()
    assert [q["id"] for q in ada["questions"]] == [question["id"]]
    sent = await client.post(f"/api/questions/{question['id']}/answer",
                             json={"body": "Yes, go"})
    assert sent.status_code == 201, sent.text
    done = await runtime.wait_task(asking.id, 10)
    assert json.loads(done.result or "{}") == {"answer": "Yes, go", "from": "person:ada"}
    assert (await client.get("/api/inbox")).json()["questions"] == []


async def test_the_token_is_required(client: httpx.AsyncClient) -> None:
    for path in ("/api/approvals", "/api/inbox"):
        assert (await client.get(path, headers={"Authorization": ""})).status_code == 401


async def test_only_a_named_approver_decides_with_their_own_token(
        runtime: Runtime) -> None:
    """People's own tokens: an operator the policy does not name is refused (403), a
    viewer is refused any change (403), and the named approver's decision is recorded
    as theirs."""
    from wakeful.core.people import Person, hash_token
    from wakeful.store.people import people_store

    tokens = {"ada": "ada-token-0123456789", "bob": "bob-token-0123456789",
              "vic": "vic-token-0123456789"}
    roles = {"ada": "operator", "bob": "operator", "vic": "viewer"}
    for name, token in tokens.items():
        await people_store(runtime.store).add(Person(name, roles[name]),  # type: ignore[arg-type]
                                              hash_token(token))
    task = await runtime.create_task("writer", "edit the plan")
    approval = await pending_approval(runtime, task.id)
    app = create_app(runtime, TOKEN)

    async def decide(name: str) -> httpx.Response:
        async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                headers={"Authorization": f"Bearer {tokens[name]}"}) as http:
            listed = (await http.get("/api/approvals")).json()["approvals"]
            assert listed[0]["may_decide"] is (name == "ada")
            return await http.post(f"/api/approvals/{approval.id}",
                                   json={"decision": "approve"})

    assert (await decide("bob")).status_code == 403
    assert (await decide("vic")).status_code == 403
    answer = await decide("ada")
    assert answer.status_code == 200, answer.text
    assert answer.json()["approval"]["decided_by"] == "person:ada"
    assert (await runtime.wait_task(task.id, 10)).state is TaskState.DONE


async def test_a_bad_person_in_the_query_is_a_clear_client_error(
        client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/inbox", params={"person": "#room"})
    assert 400 <= answer.status_code < 500
    assert "query parameter 'person'" in answer.text and "not a valid person" in answer.text
