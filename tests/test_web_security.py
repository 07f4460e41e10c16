"""The API's error contract under hostile input, and the browser-facing defences.

Every answer is ``{"error", "status"}``: a number too big for the store, a body nested
thousands deep, an unknown Host. The server answers only Host names it serves
(loopback names and IP addresses by default, others when configured), so a DNS
rebinding page cannot reach it, and sends CSP, X-Frame-Options and nosniff.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest
import websockets

from wakeful.runtime.runtime import Runtime
from wakeful.server import WebServer, create_app
from web_support import TOKEN, team

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory, agent_def: AgentFactory) -> Runtime:
    built = team(agent_def, token_delay_ms=1, latency_ms=5)
    return await make_runtime(built.agents, built.models)


def _client(runtime: Runtime, host: str = "127.0.0.1:8765", **app_args: object
            ) -> httpx.AsyncClient:
    app = create_app(runtime, TOKEN, **app_args)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url=f"http://{host}", headers=AUTH)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(runtime) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) >= {"error", "status"} and body["status"] == status, body
    message: str = body["error"]
    return message


@pytest.mark.parametrize("query", [
    "after_id=99999999999999999999999", "limit=99999999999999999999999999",
    "after_id=-99999999999999999999999",
])
async def test_numbers_too_big_for_the_store_are_422(client: httpx.AsyncClient,
                                                      query: str) -> None:
    message = error_of(await client.get(f"/api/events?{query}"), 422)
    assert query.split("=")[0] in message
    assert (await client.get("/api/events?after_id=0")).status_code == 200


@pytest.mark.parametrize("depth", [100, 5_000, 100_000])
async def test_deeply_nested_json_is_422_in_the_documented_shape(
        client: httpx.AsyncClient, depth: int) -> None:
    body = '{"to": "writer", "body": "hi", "payload": {"x": ' + "[" * depth + "]" * depth \
        + "}}"
    message = error_of(await client.post("/api/mail", content=body.encode(),
                                         headers={"Content-Type": "application/json"}), 422)
    assert "nest" in message
    # Malformed JSON is the same shape too.
    error_of(await client.post("/api/mail", content=b'{"to": ',
                               headers={"Content-Type": "application/json"}), 422)


async def test_security_headers_on_every_answer(client: httpx.AsyncClient) -> None:
    for path in ("/", "/static/app.js", "/api/status", "/api/nothing"):
        response = await client.get(path)
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, path
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:8765", True), ("localhost:8765", True), ("[::1]:8765", True),
    ("app.localhost", True), ("192.168.1.20:8765", True),
    (f"{socket.gethostname()}:8765", True), ("evil.example:8765", False),
    ("localhost.evil.example", False), ("", False),
])
async def test_only_served_host_names_are_answered(runtime: Runtime, host: str,
                                                   allowed: bool) -> None:
    async with _client(runtime) as client:
        response = await client.get("/api/status", headers={"Host": host})
        if allowed:
            assert response.status_code == 200, response.text
        else:
            message = error_of(response, 403)
            assert "Host" in message and "WAKEFUL_ALLOWED_HOSTS" in message
            assert response.headers["x-frame-options"] == "DENY"
        index = await client.get("/", headers={"Host": host})
        assert (index.status_code == 200) is allowed


async def test_configured_host_names_are_answered(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    async with _client(runtime, allowed_hosts=["wakeful.internal"]) as client:
        response = await client.get("/api/status", headers={"Host": "wakeful.internal:80"})
        assert response.status_code == 200
        error_of(await client.get("/api/status", headers={"Host": "other.internal"}), 403)
    monkeypatch.setenv("WAKEFUL_ALLOWED_HOSTS", "team.example, *.corp.example")
    async with _client(runtime) as client:
        for host in ("team.example", "ci.corp.example:8080"):
            response = await client.get("/api/status", headers={"Host": host})
            assert response.status_code == 200, host
        error_of(await client.get("/api/status", headers={"Host": "corp.example.evil"}), 403)


async def _upgrade(port: int, host: str) -> bytes:
    """A WebSocket handshake over a plain socket (a client library sets its own Host)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET /api/stream?token={TOKEN} HTTP/1.1\r\nHost: {host}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    status = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return status


async def test_a_rebinding_page_cannot_open_the_stream(runtime: Runtime) -> None:
    async with WebServer(runtime, TOKEN, host="127.0.0.1", port=0) as server:
        assert b" 403 " in await _upgrade(server.port, "evil.example")
        assert b" 101 " in await _upgrade(server.port, f"127.0.0.1:{server.port}")
        url = f"ws://127.0.0.1:{server.port}/api/stream?token={TOKEN}"
        async with websockets.connect(url) as socket:
            assert await socket.recv()
