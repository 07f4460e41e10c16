"""What the chat and overview API promise: @mentions in a channel reach only the
named agents, the overview counts and lists what happened, and a task shows its
delegations and causal tree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from wakeful.project.loader import load_project
from wakeful.runtime.responder import mentioned
from wakeful.runtime.runtime import Runtime
from web_support import TOKEN, Served, serve, team

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory, WaitUntil


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[Served]:
    built = team(agent_def, token_delay_ms=2, latency_ms=10)
    runtime = await make_runtime(built.agents, built.models)
    await runtime.mailbox.create_channel("room", ["writer", "researcher", "critic",
                                                  "person:ada"])
    server = await serve(runtime)
    try:
        yield Served(runtime, server)
    finally:
        await server.stop()


def client(served: Served) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=served.url, headers=served.headers)


def test_mentions_are_agent_names_after_an_at_sign() -> None:
    agents = {"writer", "researcher", "critic"}
    assert mentioned("@researcher only you please", agents) == {"researcher"}
    assert mentioned("@writer, @critic: both of you.", agents) == {"writer", "critic"}
    assert mentioned("mail ada@researcher.org or @nobody", agents) == set()
    assert mentioned("no names here", agents) == set()


async def _senders(http: httpx.AsyncClient) -> list[str]:
    posts = (await http.get("/api/channels/room/posts")).json()["posts"]
    return [p["sender"] for p in posts if p["sender"] != "person:ada"]


async def test_a_mention_in_a_channel_is_answered_by_the_named_agent_only(
        served: Served, wait_until: WaitUntil) -> None:
    async with client(served) as http:
        posted = await http.post("/api/channels/room/posts",
                                 json={"sender": "ada", "body": "@researcher only you please"})
        assert posted.status_code == 201, posted.text
        await wait_until(lambda: _has(http, "researcher"), within=10, what="the answer")
        await served.runtime.wait_idle(10)
        assert await _senders(http) == ["researcher"]
        # No mention: everyone in the channel answers.
        await http.post("/api/channels/room/posts", json={"sender": "ada", "body": "All?"})
        await wait_until(lambda: _count(http, 4), within=10, what="three more answers")
        assert sorted(await _senders(http)) == ["critic", "researcher", "researcher", "writer"]


async def _has(http: httpx.AsyncClient, name: str) -> bool:
    return name in await _senders(http)


async def _count(http: httpx.AsyncClient, n: int) -> bool:
    return len(await _senders(http)) >= n


async def test_the_overview_counts_tasks_and_lists_activity(served: Served,
                                                            wait_until: WaitUntil) -> None:
    runtime = served.runtime
    for name in ("writer", "critic"):
        await runtime.create_task(name, f"Say hello, {name}")
    await runtime.wait_idle(10)
    async with client(served) as http:
        response = await http.get("/api/overview", params={"activity": 10})
        assert response.status_code == 200, response.text
        data = response.json()
    assert data["totals"]["tasks"] == 2 and data["totals"]["by_state"] == {"done": 2}
    assert data["per_agent"]["writer"]["tasks"] == 1
    assert data["per_agent"]["researcher"]["tasks"] == 0
    assert data["totals"]["tokens"] > 0 and data["failures"] == [] and data["running"] == []
    assert len(data["activity"]) <= 10
    types = [e["type"] for e in data["activity"]]
    assert types.count("task.state") >= 2  # each task's end
    # Only starts and ends: no task.state row for a wait or a resume.
    for event in data["activity"]:
        if event["type"] == "task.state":
            assert event["data"]["to"] in {"running", "done", "failed", "cancelled"}
    async with client(served) as http:
        bad = await http.get("/api/overview", params={"activity": 0})
    assert bad.status_code == 422 and "activity" in bad.text


async def test_a_task_shows_its_delegations_and_causal_tree(tmp_path: Path) -> None:
    from wakeful.cli.main import copy_example

    folder = tmp_path / "team"
    copy_example(folder)
    runtime = Runtime.from_project(load_project(folder))
    async with runtime:
        await runtime.wait_idle(60)
        server = await serve(runtime)
        try:
            [plan] = [t for t in await runtime.store.list_tasks(agent="coordinator")
                      if t.instruction.startswith("Plan")]
            async with httpx.AsyncClient(base_url=server.url, headers={
                    "Authorization": f"Bearer {TOKEN}"}) as http:
                task = (await http.get(f"/api/tasks/{plan.id}")).json()
                [child] = task["children"]
                assert child["agent"] == "writer" and child["state"] == "done"
                back = (await http.get(f"/api/tasks/{child['id']}")).json()
                assert back["parent_id"] == plan.id
                tree = (await http.get(f"/api/tasks/{child['id']}/tree")).json()
                assert tree["root"]["id"] == plan.id  # the tree of the whole trace
                assert [c["id"] for c in tree["root"]["children"]] == [child["id"]]
                missing = await http.get("/api/tasks/t_nope/tree")
                assert missing.status_code == 404 and "t_nope" in missing.text
        finally:
            await server.stop()


async def test_search_finds_tasks_mail_and_events_with_filters(served: Served) -> None:
    runtime = served.runtime
    await runtime.create_task("writer", "Write about zebras")
    await runtime.create_task("critic", "Critique the giraffe essay")
    await runtime.mailbox.send("person:ada", "researcher", body="Any news on zebras?")
    await runtime.wait_idle(10)
    async with client(served) as http:
        found = (await http.get("/api/search", params={"q": "ZEBRAS"})).json()["hits"]
        kinds = {h["kind"] for h in found}
        assert {"tasks", "mail", "events"} <= kinds
        assert all("zebras" in (h["text"] + h["title"]).lower() for h in found)
        tasks = (await http.get("/api/search", params={"q": "zebras", "kind": "tasks"})).json()
        # The writer's task, and the researcher's task that answered ada's mail.
        assert sorted(h["agent"] for h in tasks["hits"]) == ["researcher", "writer"]
        mine = (await http.get("/api/search", params={"q": "zebras", "kind": "tasks",
                                                      "agent": "writer"})).json()
        [hit] = mine["hits"]
        assert hit["state"] == "done" and hit["task_id"] and hit["title"] == "Write about zebras"
        none = (await http.get("/api/search", params={"q": "zebras", "agent": "critic",
                                                      "kind": "tasks"})).json()
        assert none["hits"] == []
        failed = (await http.get("/api/search", params={"state": "failed"})).json()
        assert failed["hits"] == []
        later = (await http.get("/api/search", params={"q": "zebras", "since": 4e9})).json()
        assert later["hits"] == []
        unknown = await http.get("/api/search", params={"agent": "nobody"})
        assert unknown.status_code == 404 and "nobody" in unknown.text
        bad = await http.get("/api/search", params={"kind": "everything"})
        assert bad.status_code == 422 and "kind" in bad.text


async def test_tasks_and_events_page_forwards_with_a_cursor(served: Served) -> None:
    made = [await served.runtime.create_task("writer", f"Task {n}") for n in range(5)]
    await served.runtime.wait_idle(10)
    async with client(served) as http:
        first = (await http.get("/api/tasks", params={"agent": "writer", "limit": 2})).json()
        assert [t["id"] for t in first["tasks"]] == [t.id for t in made[-2:]]  # the newest
        seen: list[str] = []
        after = made[0].id
        while after:
            page = (await http.get("/api/tasks", params={"agent": "writer", "limit": 2,
                                                         "after": after})).json()
            seen += [t["id"] for t in page["tasks"]]
            after = page["next"]
        assert seen == [t.id for t in made[1:]]  # every one once, in order
        missing = await http.get("/api/tasks", params={"after": "t_nope"})
        assert missing.status_code == 404 and "t_nope" in missing.text
        events: list[int] = []
        cursor: int | None = 0
        while cursor is not None:
            page = (await http.get("/api/events", params={"agent": "writer", "limit": 7,
                                                          "after_id": cursor})).json()
            events += [e["id"] for e in page["events"]]
            cursor = page["next"]
        everything = (await http.get("/api/events", params={"agent": "writer",
                                                            "limit": 1000})).json()
        assert events == [e["id"] for e in everything["events"]]
        assert len(events) == len(set(events)) > 7
