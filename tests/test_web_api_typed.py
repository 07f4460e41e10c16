"""The typed API: every route in the OpenAPI schema says what it answers, and every list
pages the same way (``after``, ``limit``, ``next``); walking a list a page at a time,
following ``next``, gives every item once, the same items as one big page."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from wakeful.core.people import Person
from wakeful.server.app import create_app
from wakeful.store.people import people_store
from web_support import TOKEN, Served, serve, team

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory

SCHEMA = create_app(cast(Any, None), TOKEN).openapi()
# Documents, not lists: one thing each, whose arrays are parts of that thing.
DOCUMENTS = {"/api/overview", "/api/agents/{name}", "/api/tasks/{task_id}",
             "/api/tasks/{task_id}/tree", "/api/mail/{mail_id}", "/api/channels/{name}",
             "/api/approvals/{approval_id}", "/api/status", "/api/whoami",
             "/api/agents/{name}/export"}
NEWEST_FIRST = {"/api/agents/{name}/controls", "/api/search"}
PATH_VALUES = {"name": "writer", "agent": "writer", "task_id": "", "mail_id": "",
               "approval_id": "", "member": "person:ada", "control_id": ""}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _answer(operation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ok = [code for code in operation["responses"] if code.startswith("2")]
    assert len(ok) == 1, f"{operation['operationId']}: one 2xx answer, not {ok}"
    content = operation["responses"][ok[0]].get("content", {})
    assert content, f"{operation['operationId']}: its {ok[0]} answer has no content"
    media, found = next(iter(content.items()))
    return media, _resolve(found["schema"])


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, operation) for path, methods in SCHEMA["paths"].items()
            for method, operation in methods.items()]


def _is_list(path: str, schema: dict[str, Any]) -> bool:
    return path not in DOCUMENTS and any(
        _resolve(p).get("type") == "array" for p in schema.get("properties", {}).values())


def _lists() -> list[str]:
    return sorted(path for method, path, operation in _operations()
                  if method == "GET" and _is_list(path, _answer(operation)[1]))


def test_every_route_declares_what_it_answers() -> None:
    untyped = []
    for method, path, operation in _operations():
        media, schema = _answer(operation)
        if media == "application/json" and not (schema.get("properties")
                                                and schema.get("title")):
            untyped.append(f"{method} {path}: {schema}")
        elif media != "application/json" and schema.get("type") != "string":
            untyped.append(f"{method} {path}: {media} {schema}")
    assert untyped == []
    assert len(_operations()) >= 44


def test_every_list_pages_with_after_limit_and_next() -> None:
    lists = _lists()
    assert {"/api/agents", "/api/people", "/api/mail", "/api/channels",
            "/api/channels/{name}/posts", "/api/events", "/api/approvals", "/api/inbox",
            "/api/locks", "/api/search", "/api/tasks", "/api/conversations/{agent}",
            "/api/agents/{name}/timeline", "/api/agents/{name}/mail",
            "/api/agents/{name}/controls", "/api/tasks/{task_id}/events"} == set(lists)
    for path in lists:
        operation = SCHEMA["paths"][path]["get"]
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert {"after", "limit"} <= query, f"{path} takes {query}"
        assert "next" in _answer(operation)[1]["properties"], path
    for path in DOCUMENTS:  # a document named here is one the schema has
        assert path in SCHEMA["paths"], path


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[Served]:
    built = team(agent_def, token_delay_ms=1, latency_ms=1)
    runtime = await make_runtime(built.agents, built.models)
    await runtime.mailbox.create_channel("room", ["writer", "critic", "person:ada"])
    for name in ("ada", "bob", "cy"):
        await people_store(runtime.store).add(Person(name, "viewer"), f"hash-{name}")
    server = await serve(runtime)
    try:
        yield Served(runtime, server)
    finally:
        await server.stop()


def _start(path: str) -> str:
    """`after` that starts at the first item: 0 for a numeric cursor, else empty."""
    for parameter in SCHEMA["paths"][path]["get"]["parameters"]:
        if parameter["name"] == "after":
            types = {s.get("type") for s in parameter["schema"].get("anyOf", [])}
            return "0" if "integer" in types else ""
    raise AssertionError(path)


def _key(item: Any) -> str:
    """An item's identity (a mail's status may change between two reads of it)."""
    if isinstance(item, dict):
        for name in ("id", "name"):
            if item.get(name) is not None:
                return f"{item.get('owner', '')}:{item[name]}"
    return json.dumps(item, sort_keys=True)


def _items(body: dict[str, Any]) -> dict[str, list[str]]:
    return {key: [_key(item) for item in value]
            for key, value in body.items() if isinstance(value, list)}


async def test_walking_every_list_page_by_page_gives_each_item_once(served: Served) -> None:
    runtime = served.runtime
    async with httpx.AsyncClient(base_url=served.url, headers=served.headers,
                                 timeout=60) as http:
        for n in range(3):
            assert (await http.post("/api/tasks", json={"agent": "writer",
                                                        "instruction": f"job {n}"})
                    ).status_code == 201
            assert (await http.post("/api/mail", json={"to": "writer", "body": f"hi {n}",
                                                       "sender": "person:ada"})
                    ).status_code == 201
            assert (await http.post("/api/channels/room/posts",
                                    json={"body": f"post {n}", "join": True})
                    ).status_code == 201
        for action in ("pause", "resume", "pause", "resume"):
            assert (await http.post(f"/api/agents/writer/{action}")).status_code == 200
        await runtime.wait_idle(30)
        await runtime.store.flush()
        task = (await http.get("/api/tasks", params={"agent": "writer"})).json()["tasks"][0]
        values = {**PATH_VALUES, "task_id": task["id"]}
        walked = 0
        for path in _lists():
            url = path.format(**{**values, "name": "room"} if "/channels/" in path
                              else values)
            params = {"q": "job"} if path == "/api/search" else {}
            start = _start(path)
            whole = (await http.get(url, params={**params, "after": start, "limit": 500}))
            assert whole.status_code == 200, f"{url}: {whole.text}"
            assert whole.json()["next"] is None, url  # one big page holds it all
            expected = _items(whole.json())
            seen: dict[str, list[str]] = {key: [] for key in expected}
            cursor: str | None = start
            pages = 0
            while cursor is not None:
                page = await http.get(url, params={**params, "after": cursor, "limit": 2})
                assert page.status_code == 200, f"{url} after {cursor!r}: {page.text}"
                for key, found in _items(page.json()).items():
                    assert len(found) <= 2, f"{url}: {key} holds {len(found)} > limit"
                    seen[key] += found
                cursor = page.json()["next"]
                pages += 1
                assert pages < 200, f"{url}: the pages never end"
            if path in NEWEST_FIRST:  # each page newest first: the same items, once
                seen = {key: sorted(v) for key, v in seen.items()}
                expected = {key: sorted(v) for key, v in expected.items()}
            assert seen == expected, url
            if sum(len(v) for v in expected.values()) > 2:
                walked += 1
                assert pages > 1, f"{url}: more than one page's worth in one page"
        assert walked >= 8  # most lists had more than a page to walk


async def test_a_chat_history_reads_backwards_with_before_and_older(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers=served.headers,
                                 timeout=60) as http:
        for n in range(5):
            await http.post("/api/channels/room/posts", json={"body": f"post {n}",
                                                              "join": True})
            await http.post("/api/mail", json={"to": "writer", "body": f"hi {n}"})
        await served.runtime.wait_idle(30)
        for url, key in (("/api/channels/room/posts", "posts"),
                         ("/api/conversations/writer", "mail")):
            whole = (await http.get(url, params={"limit": 1000})).json()
            assert whole["older"] is None and whole["next"] is None
            got: list[str] = []
            page = (await http.get(url, params={"limit": 3})).json()
            while True:
                got = [m["id"] for m in page[key]] + got
                if page["older"] is None:
                    break
                page = (await http.get(url, params={"limit": 3, "before": page["older"]})
                        ).json()
            assert got == [m["id"] for m in whole[key]] and len(got) >= 6, url


async def test_a_cursor_that_is_not_one_is_a_clear_4xx(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, headers=served.headers) as http:
        for url in ("/api/inbox", "/api/search", "/api/locks", "/api/agents/writer/mail",
                    "/api/approvals"):
            bad = await http.get(url, params={"after": "not a cursor!"})
            assert bad.status_code == 422 and "query.after" in bad.json()["error"], url
        gone = await http.get("/api/agents", params={"after": "nobody"})
        assert gone.status_code == 404 and "nobody" in gone.json()["error"]
        wrong = await http.get("/api/events", params={"after": "x"})
        assert wrong.status_code == 422 and "after" in wrong.text
