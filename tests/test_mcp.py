"""MCP both ways: agents using tools of real MCP servers (stdio: the mcp-server-time
package; streamable HTTP: a server the test starts with the mcp SDK), and the mcp SDK's
client driving Wakeful's own MCP endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from conftest import AgentFactory, RuntimeFactory, ScriptFactory
from interop_support import free_port, serve_app
from polling import until
from wakeful.interop.mcp_client import McpTools
from wakeful.project.interop import McpServerConfig
from wakeful.runtime.runtime import Runtime
from wakeful.server import WebServer
from wakeful.server.interop import InteropService
from web_support import TOKEN, serve

TIME_SERVER = McpServerConfig(name="time", command=sys.executable,
                              args=["-m", "mcp_server_time", "--local-timezone", "UTC"])


@contextlib.asynccontextmanager
async def http_mcp_server(port: int | None = None, *, more: bool = False,
                          unlock: bool = False) -> AsyncIterator[str]:
    """A streamable HTTP MCP server made with the mcp SDK, on a free port: ``add``;
    ``more``: also ``mul``; ``unlock``: an ``unlock`` tool that adds ``mul`` while the
    server runs and tells its clients (``notifications/tools/list_changed``)."""
    server: MCPServer = MCPServer(name="calc", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def mul(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    if more:
        server.add_tool(mul)
    if unlock:
        @server.tool(name="unlock")
        async def unlock_mul(ctx: Context) -> str:
            """Add the mul tool."""
            server.add_tool(mul)
            await ctx.session.send_tool_list_changed()
            return "mul added"

    app = server.streamable_http_app(json_response=not unlock, transport_security=(
        TransportSecuritySettings(enable_dns_rebinding_protection=False)))
    async with serve_app(app, port) as url:
        yield f"{url}/mcp"


async def runtime_with(make_runtime: RuntimeFactory, agent_def: AgentFactory,
                       script: ScriptFactory, servers: list[McpServerConfig],
                       steps: list[dict[str, object]], tools: list[str]) -> Runtime:
    runtime = await make_runtime([agent_def("clock", model="m", tools=tools)],
                                 {"m": script(steps)}, start=False)
    runtime.add_service(InteropService(mcp_servers=servers, serve_mcp=False))
    await runtime.start()
    return runtime


@pytest.mark.skipif(shutil.which(sys.executable) is None, reason="no python")
async def test_agent_uses_a_stdio_mcp_server(make_runtime: RuntimeFactory,
                                             agent_def: AgentFactory,
                                             script: ScriptFactory) -> None:
    steps: list[dict[str, object]] = [
        {"say": "checking", "tool_calls": [
            {"tool": "time.get_current_time", "args": {"timezone": "Europe/Paris"}},
            {"tool": "time.get_current_time", "args": {"timezone": 42}}]},
        {"say": "It is {last_tool_result}"}]
    runtime = await runtime_with(make_runtime, agent_def, script, [TIME_SERVER], steps,
                                 ["time.*"])  # a glob grants all of the server's tools
    assert "time.get_current_time" in runtime.tools
    assert "time.convert_time" in runtime.agent("clock").allowed_tools
    record = await runtime.create_task("clock", "what time is it in Paris?")
    done = await runtime.wait_task(record.id, 60)
    assert done.state.value == "done", done.error
    messages = await runtime.store.load_messages(record.id)
    results = [m["content"] for m in messages if m["role"] == "tool"]
    assert "Europe/Paris" in results[0]  # the server's own JSON answer
    # The server's JSON Schema refused the bad argument before any call was sent.
    assert "timezone" in results[1] and "is not of type 'string'" in results[1]


async def test_agent_uses_a_streamable_http_mcp_server(make_runtime: RuntimeFactory,
                                                       agent_def: AgentFactory,
                                                       script: ScriptFactory) -> None:
    async with http_mcp_server() as url:
        steps: list[dict[str, object]] = [
            {"say": "adding", "tool_calls": [{"tool": "calc.add", "args": {"a": 2, "b": 40}}]},
            {"say": "Sum: {last_tool_result}"}]
        runtime = await runtime_with(make_runtime, agent_def, script,
                                     [McpServerConfig(name="calc", url=url)], steps,
                                     ["calc.add"])
        record = await runtime.create_task("clock", "add")
        done = await runtime.wait_task(record.id, 60)
        assert done.result == "Sum: 42"
        await runtime.stop()


async def test_a_server_that_goes_away_is_reconnected(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory) -> None:
    """While the server is down its tools fail at once, clearly; once it is back, the
    connection is made again (with backoff) and the same tool works."""
    steps: list[dict[str, object]] = [{"say": "x", "tool_calls": [
        {"tool": "calc.add", "args": {"a": 2, "b": 40}}]}, {"say": "{last_tool_result}"}]
    runtime = await make_runtime([agent_def("clock", model="m", tools=["calc.add"])],
                                 {"m": script(steps)})
    port = free_port()
    async with http_mcp_server(port) as url:
        tools = McpTools([McpServerConfig(name="calc", url=url, timeout_s=5)],
                         probe_interval_s=0.05)
        await tools.start(runtime)
    try:
        connection = tools.connections[0]
        await connection.lost.wait()  # the probe noticed
        record = await runtime.create_task("clock", "add while down")
        down = await runtime.wait_task(record.id, 60)
        assert "MCP server 'calc' is not connected; it is being restarted" in (
            down.result or ""), down.result
        async with http_mcp_server(port):
            await asyncio.wait_for(connection.ready.wait(), 30)
            record = await runtime.create_task("clock", "add when back")
            back = await runtime.wait_task(record.id, 60)
            assert back.result == "42"
            assert connection.connects == 2
    finally:
        await tools.close()


MUL_STEPS: list[dict[str, object]] = [
    {"say": "x", "tool_calls": [{"tool": "calc.mul", "args": {"a": 6, "b": 7}}]},
    {"say": "{last_tool_result}"}]


async def test_a_glob_grants_the_tools_a_restarted_server_adds(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory) -> None:
    """``calc.*`` covers ``calc.mul``, which the server lists only after a restart."""
    runtime = await make_runtime([agent_def("clock", model="m", tools=["calc.*"])],
                                 {"m": script(MUL_STEPS)})
    port = free_port()
    async with http_mcp_server(port) as url:
        tools = McpTools([McpServerConfig(name="calc", url=url, timeout_s=5)],
                         probe_interval_s=0.05)
        await tools.start(runtime)
    try:
        agent = runtime.agent("clock")
        assert "calc.add" in agent.allowed_tools and "calc.mul" not in runtime.tools
        async with http_mcp_server(port, more=True):
            await until(lambda: "calc.mul" in agent.allowed_tools, 30, "calc.mul granted")
            record = await runtime.create_task("clock", "multiply")
            done = await runtime.wait_task(record.id, 60)
            assert done.result == "42", done.result
            assert "calc.mul" in agent.definition.tools  # a restarted agent keeps it
    finally:
        await tools.close()


async def test_a_glob_grants_the_tools_a_server_announces(
        make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory) -> None:
    """A tool added while the server runs, announced with tools/list_changed, is
    granted at once (the periodic probe is an hour away here)."""
    runtime = await make_runtime([agent_def("clock", model="m", tools=["calc.*"]),
                                  agent_def("other", model="m", tools=["calc.add"])],
                                 {"m": script(MUL_STEPS)})
    async with http_mcp_server(unlock=True) as url:
        tools = McpTools([McpServerConfig(name="calc", url=url, timeout_s=5)],
                         probe_interval_s=3600)
        await tools.start(runtime)
        try:
            agent = runtime.agent("clock")
            assert "calc.mul" not in runtime.tools
            with runtime.events.subscribe(lambda e: e.type == "mcp.tools_added") as feed:
                assert await tools.connections[0].call("unlock", {}) == "mul added"
                await until(lambda: "calc.mul" in agent.allowed_tools, 30, "calc.mul granted")
                added = feed.get_nowait()
            assert added is not None and added.data["granted"] == {"clock": ["calc.mul"]}
            assert "calc.mul" not in runtime.agent("other").allowed_tools  # no glob
            record = await runtime.create_task("clock", "multiply")
            done = await runtime.wait_task(record.id, 60)
            assert done.result == "42", done.result
        finally:
            await tools.close()


@pytest.fixture
async def served(make_runtime: RuntimeFactory, agent_def: AgentFactory,
                 script: ScriptFactory) -> AsyncIterator[WebServer]:
    runtime = await make_runtime([agent_def("writer", model="m")],
                                 {"m": script([{"say": "A haiku about {instruction}"}])},
                                 start=False)
    runtime.add_service(InteropService())
    await runtime.start()
    server = await serve(runtime)
    yield server
    await server.stop()


async def test_mcp_client_drives_the_team(served: WebServer) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http, Client(
            streamable_http_client(f"{served.url}mcp", http_client=http),
            mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"list_agents", "start_task", "get_task", "send_mail", "read_conversation",
                "post_to_channel", "list_tasks", "task_events"} <= names
        agents = await client.call_tool("list_agents", {})
        assert "writer" in agents.content[0].text  # type: ignore[union-attr]
        started = await client.call_tool("start_task", {"agent": "writer",
                                                        "instruction": "rain", "wait_s": 30})
        task = json.loads(started.content[0].text)  # type: ignore[union-attr]
        assert task["state"] == "done" and task["result"] == "A haiku about rain"
        events = await client.call_tool("task_events", {"task_id": task["id"]})
        assert "task.state" in " ".join(c.text for c in events.content)  # type: ignore[union-attr]
        bad = await client.call_tool("start_task", {"agent": "nobody", "instruction": "x"})
        assert bad.is_error and "nobody" in bad.content[0].text  # type: ignore[union-attr]


async def test_mcp_endpoint_needs_the_token(served: WebServer) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{served.url}mcp", json={})
    assert response.status_code == 401


async def test_wakeful_mcp_over_stdio(tmp_path: Path) -> None:
    """`wakeful mcp -p DIR`, launched by the mcp SDK's client as MCP clients do."""
    from mcp import StdioServerParameters

    root = tmp_path / "team"
    (root / "agents").mkdir(parents=True)
    (root / "wakeful.yaml").write_text("name: stdio-team\ndefault_model: scripted\n")
    (root / "agents" / "echo.yaml").write_text("name: echo\nrole: repeats things\n")
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "wakeful", "mcp", "-p", str(root)],
                                   env={**os.environ})
    async with Client(params, mode="legacy") as client:
        agents = await client.call_tool("list_agents", {})
        assert "repeats things" in agents.content[0].text  # type: ignore[union-attr]
        started = await client.call_tool("start_task", {
            "agent": "echo", "instruction": "hello there", "wait_s": 30})
        task = json.loads(started.content[0].text)  # type: ignore[union-attr]
        assert task["state"] == "done" and "hello there" in task["result"]


async def test_sampling_requests_go_to_the_agents_model(make_runtime: RuntimeFactory,
                                                       agent_def: AgentFactory,
                                                       script: ScriptFactory) -> None:
    poet = McpServerConfig(name="poet", command=sys.executable,
                           args=[str(Path(__file__).parent / "mcp_sampling_server.py")])
    steps: list[dict[str, object]] = [
        {"say": "asking", "tool_calls": [{"tool": "poet.haiku", "args": {"topic": "rain"}}]},
        {"say": "{last_tool_result}"}]
    runtime = await runtime_with(make_runtime, agent_def, script, [poet], steps,
                                 ["poet.haiku"])
    record = await runtime.create_task("clock", "a haiku")
    done = await runtime.wait_task(record.id, 60)
    # The agent's (scripted) model answered the server's sampling request with its
    # first step's text, and the server's tool returned that.
    assert done.result == "poet got: asking", done.result
    await runtime.store.flush()
    sampled = await runtime.store.query_events(types=["mcp.sampling"])
    assert [e.agent for e in sampled] == ["clock"]


def test_a_config_declares_the_resource_a_tool_touches() -> None:
    """``resources: {glob: resource}``: matching tools auto-pause on that resource; the
    others touch nothing."""
    import mcp_types

    from wakeful.core.resources import Access
    from wakeful.interop.mcp_client import McpConnection, make_tools

    config = McpServerConfig(name="notes", command="unused",
                             resources={"write_*": "file:notes.md"})
    connection = McpConnection(config)
    connection.tools = [mcp_types.Tool(name=n, input_schema={"type": "object"})
                        for n in ("write_note", "read_note")]
    tools = {t.name: t for t in make_tools(connection)}
    writer, reader = tools["notes.write_note"], tools["notes.read_note"]
    assert writer.resources is not None and reader.resources is None
    assert list(writer.resources(None)) == [Access.write("file:notes.md")]
