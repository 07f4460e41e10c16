"""Generated bad input, sent to every route in the OpenAPI schema of a real server,
never gets a 500: each operation, with path parameters, query parameters and JSON
bodies drawn by Hypothesis (some well-formed, most not), is answered with a clear
4xx or a success, and the runtime keeps running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wakeful.server.app import create_app
from web_support import TOKEN, Served, serve, team

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory

NAMES = st.sampled_from(["writer", "critic", "researcher", "room", "#room", "t_nope",
                         "person:ada", "m_nope", "*"])
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON: Any = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            found.append((method.upper(), path, operation))
    return sorted(found, key=lambda o: (o[1], o[0]))


@st.composite
def requests(draw: st.DrawFn, schema: dict[str, Any]) -> tuple[str, str, dict[str, Any],
                                                               Any]:
    method, path, operation = draw(st.sampled_from(operations(schema)))
    query: dict[str, Any] = {}
    for parameter in operation.get("parameters", []):
        value = draw(st.one_of(NAMES, TEXT, st.integers(-5, 10**6).map(str)))
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", quote(value, safe="") or "x")
        elif draw(st.booleans()):
            query[parameter["name"]] = value
    body: Any = None
    if "requestBody" in operation:
        body = draw(st.one_of(JSON, st.fixed_dictionaries({}, optional={
            "agent": NAMES, "instruction": TEXT, "to": NAMES, "body": TEXT,
            "sender": NAMES, "name": TEXT, "members": st.lists(NAMES, max_size=3),
            "member": NAMES, "reason": TEXT, "payload": JSON})))
    return method, path, query, body


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory
                 ) -> AsyncIterator[Served]:
    built = team(agent_def, token_delay_ms=1, latency_ms=1)
    runtime = await make_runtime(built.agents, built.models)
    await runtime.mailbox.create_channel("room", ["writer", "critic", "person:ada"])
    server = await serve(runtime)
    try:
        yield Served(runtime, server)
    finally:
        await server.stop()


SCHEMA = create_app(cast(Any, None), TOKEN).openapi()  # the schema needs no runtime


def test_the_schema_lists_every_route() -> None:
    paths = {path for _, path, _ in operations(SCHEMA)}
    assert {"/api/overview", "/api/search", "/api/tasks/{task_id}/tree",
            "/api/agents/{name}/pause"} <= paths
    assert len(operations(SCHEMA)) >= 30


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(request=requests(SCHEMA))
async def test_generated_bad_input_never_gets_a_500(
        served: Served, request: tuple[str, str, dict[str, Any], Any]) -> None:
    method, path, query, body = request
    async with httpx.AsyncClient(base_url=served.url, headers=served.headers,
                                 timeout=30) as http:
        response = await http.request(method, path, params=query,
                                      **({"json": body} if body is not None else {}))
        assert response.status_code < 500, (
            f"{method} {path} {query} {body!r}: {response.status_code} {response.text[:300]}")
        if response.status_code >= 400:
            assert response.json()["error"], response.text  # a clear one-line error
        # The runtime is still there and answering.
        assert (await http.get("/api/status")).status_code == 200
