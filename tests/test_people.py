"""Who a person is: their own token (stored hashed), a role, and what it allows over
the API; the CLI that adds them; may_decide for approvals."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from conftest import AgentFactory, EventQuery, RuntimeFactory
from schedule_support import steps
from wakeful.cli.main import app as cli
from wakeful.core.people import ADMIN_CALLER, Caller, Person, hash_token, may_decide
from wakeful.runtime.runtime import Runtime
from wakeful.server import create_app
from wakeful.store.people import people_store

TOKEN = "project-token-0123456789"
TOKENS = {"vic": "viewer-token-0123456789", "ada": "operator-token-0123456789",
          "root": "admin-token-0123456789"}
ROLES = {"vic": "viewer", "ada": "operator", "root": "admin"}


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory, agent_def: AgentFactory) -> Runtime:
    rt = await make_runtime([agent_def("writer", model="m")], {"m": steps({"say": "hi"})})
    for name, token in TOKENS.items():
        await people_store(rt.store).add(Person(name, ROLES[name]), hash_token(token))  # type: ignore[arg-type]
    return rt


@pytest.fixture
async def clients(runtime: Runtime) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    app = create_app(runtime, TOKEN)
    made = {}
    for name, token in {**TOKENS, "project": TOKEN, "nobody": "not-a-token-0123456789"}.items():
        made[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                       base_url="http://127.0.0.1",
                                       headers={"Authorization": f"Bearer {token}"})
    yield made
    for client in made.values():
        await client.aclose()


async def test_the_api_knows_who_calls(clients: dict[str, httpx.AsyncClient]) -> None:
    me = (await clients["ada"].get("/api/whoami")).json()
    assert me == {"identity": "person:ada", "name": "ada", "role": "operator",
                  "project_token": False}
    admin = (await clients["project"].get("/api/whoami")).json()
    assert admin["identity"] == "person:admin" and admin["role"] == "admin"
    assert (await clients["nobody"].get("/api/whoami")).status_code == 401


async def test_a_viewer_reads_but_cannot_control_or_send(
        clients: dict[str, httpx.AsyncClient], runtime: Runtime, events: EventQuery) -> None:
    viewer = clients["vic"]
    assert (await viewer.get("/api/agents")).status_code == 200
    refused = await viewer.post("/api/agents/writer/pause", json={"reason": "x"})
    assert refused.status_code == 403
    assert "person:vic is a viewer" in refused.json()["error"]
    assert runtime.agent("writer").state.value == "running"
    assert (await viewer.post("/api/mail", json={"to": "writer", "body": "hi"})
            ).status_code == 403
    assert (await viewer.post("/api/tasks", json={"agent": "writer", "instruction": "x"})
            ).status_code == 403
    # An operator may control; the action records who they are and why.
    allowed = await clients["ada"].post("/api/agents/writer/pause",
                                        json={"reason": "checking something"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["state"] == "paused"
    [pause] = await events(runtime, types=["control.pause"])
    assert pause.data["by"] == "person:ada" and pause.data["reason"] == "checking something"


async def test_a_person_sends_only_as_themselves(
        clients: dict[str, httpx.AsyncClient], runtime: Runtime) -> None:
    ada = clients["ada"]
    sent = await ada.post("/api/mail", json={"to": "writer", "body": "hello"})
    assert sent.status_code == 201, sent.text
    assert sent.json()["mail"]["sender"] == "person:ada"
    for other in ("person:bob", "bob", "person:writer"):
        refused = await ada.post("/api/mail", json={"to": "writer", "body": "x",
                                                    "sender": other})
        assert refused.status_code == 403, other
        assert "may send only as themselves" in refused.json()["error"]
    task = await ada.post("/api/tasks", json={"agent": "writer", "instruction": "draft"})
    assert task.json()["created_by"] == "person:ada"
    assert (await ada.post("/api/tasks", json={"agent": "writer", "instruction": "x",
                                               "created_by": "person:bob"})).status_code == 403
    # The project token is the admin's: it may still speak for a person it names.
    named = await clients["project"].post("/api/mail", json={
        "to": "writer", "body": "x", "sender": "person:bob"})
    assert named.status_code == 201


async def test_managing_agents_needs_an_admin(clients: dict[str, httpx.AsyncClient]) -> None:
    fields = {"name": "helper", "model": "m"}
    refused = await clients["ada"].post("/api/agents", json=fields)
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["error"]
    assert (await clients["root"].post("/api/agents", json=fields)).status_code == 201
    assert (await clients["ada"].get("/api/people")).status_code == 403
    people = (await clients["root"].get("/api/people")).json()["people"]
    assert [p["name"] for p in people] == ["ada", "root", "vic"]


async def test_a_removed_person_is_refused_at_once(
        clients: dict[str, httpx.AsyncClient], runtime: Runtime) -> None:
    assert (await clients["ada"].get("/api/whoami")).status_code == 200
    assert await people_store(runtime.store).remove("ada")
    assert (await clients["ada"].get("/api/whoami")).status_code == 401


def test_may_decide() -> None:
    ada = Caller("person:ada", "operator")
    viewer = Caller("person:vic", "viewer")
    assert may_decide(ada, ["person:ada"]) and may_decide(ada, ["ada", "person:bob"])
    assert not may_decide(ada, ["person:bob"])
    assert not may_decide(viewer, ["person:vic"])
    assert may_decide(ADMIN_CALLER, ["person:bob"])
    assert may_decide(Caller("person:root", "admin"), ["person:bob"])


def test_people_add_prints_the_link_once_and_stores_a_hash(tmp_path: Path) -> None:
    project = tmp_path / "team"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(project)]).exit_code == 0
    added = runner.invoke(cli, ["people", "add", "ada", "--role", "operator", "-p",
                                str(project)])
    assert added.exit_code == 0, added.output
    [token] = re.findall(r"#token=(\S+)", added.output)
    assert "shown this once" in added.output.replace("\n", " ")
    with sqlite3.connect(project / "wakeful.db") as conn:
        [(stored, role)] = conn.execute("SELECT token_hash, role FROM people").fetchall()
    assert stored == hash_token(token) and token not in stored and role == "operator"
    twice = runner.invoke(cli, ["people", "add", "ada", "-p", str(project)])
    assert twice.exit_code == 1 and "already exists" in twice.output
    bad = runner.invoke(cli, ["people", "add", "ada", "--role", "boss", "-p", str(project)])
    assert bad.exit_code == 1 and "unknown role 'boss'" in bad.output
    listed = runner.invoke(cli, ["people", "list", "-p", str(project)])
    assert "person:ada  operator" in listed.output
    assert runner.invoke(cli, ["people", "remove", "ada", "-p", str(project)]).exit_code == 0
    gone = runner.invoke(cli, ["people", "remove", "ada", "-p", str(project)])
    assert gone.exit_code == 1 and "no person named 'ada'" in gone.output
