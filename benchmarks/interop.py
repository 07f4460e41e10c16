"""Benchmark: what A2A and MCP cost over Wakeful's own ways of doing the same thing.

What is measured
----------------
A2A. One agent on a scripted model with no latency, served on 127.0.0.1 with the A2A
server mounted. The same task ("Capital?", one model step) is run N times (default
200), one at a time, over the same HTTP client (plain httpx, keep-alive), two ways:

* ``api``: ``POST /api/tasks`` (Wakeful's own API: the task is stored and queued), then
  the runtime's ``wait_task`` until it is done (in process, no polling);
* ``a2a``: one JSON-RPC ``SendMessage`` to ``/a2a/{agent}``, which stores the task (and
  its A2A row), waits until it completes and returns the A2A ``Task``.

``a2a_send_overhead_ms`` is the difference of the medians: what A2A's parsing, its own
row, the event-log wait and the proto conversion add to a task round trip.
``a2a_accept_overhead_ms`` does the same with ``returnImmediately`` against the plain
``POST`` (acceptance only).

MCP. The same tool (add two integers) is called M times (default 500) through the tool
registry, as a task's step calls it: once as a Python tool, once as ``calc.add`` from an
MCP server over stdio (this script in a subprocess, ``--mcp-stdio-server``) and once from
one over streamable HTTP (in process, uvicorn). ``mcp_call_overhead_ms`` is the stdio
median minus the Python median.

Run it with ``python benchmarks/interop.py [--sends N] [--calls M]``. The last line of
its output is one JSON object with the figures (units in the key names).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

RERUN = "python benchmarks/interop.py"
SELF = str(Path(__file__).resolve())
TOKEN = "benchmark-token-0123456789"
REPLY = "Paris."


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered) * 1000, 2),
            "p90": round(ordered[int(len(ordered) * 0.9)] * 1000, 2)}


async def bench_a2a(sends: int) -> dict[str, Any]:
    from wakeful.models.registry import ModelRegistry
    from wakeful.models.scripted import ScriptedModel
    from wakeful.project.definitions import AgentDefinition
    from wakeful.runtime.runtime import Runtime
    from wakeful.server import WebServer
    from wakeful.server.interop import InteropService
    from wakeful.store.sqlite import SQLiteStore

    folder = Path(tempfile.mkdtemp(prefix="wakeful-interop-bench-"))
    registry = ModelRegistry(folder / "scripts")
    registry.register("scripted:bench", ScriptedModel.from_steps([{"say": REPLY}]))
    runtime = Runtime(store=SQLiteStore(folder / "wakeful.db"), models=registry,
                      agents=[AgentDefinition(name="helper", model="scripted:bench",
                                              max_concurrent_tasks=4)])
    runtime.add_service(InteropService(serve_mcp=False))
    await runtime.start()
    server = WebServer(runtime, TOKEN, port=0)
    await server.start()
    headers = {"Authorization": f"Bearer {TOKEN}", "A2A-Version": "1.0"}
    times: dict[str, list[float]] = {"api": [], "a2a": [], "api_accept": [], "a2a_accept": []}
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers,
                                     timeout=60) as http:
            async def api(wait: bool) -> None:
                response = await http.post("/api/tasks", json={"agent": "helper",
                                                               "instruction": "Capital?"})
                response.raise_for_status()
                if wait:
                    done = await runtime.wait_task(response.json()["id"], 60)
                    assert done.result == REPLY, done

            async def a2a(n: int, immediately: bool) -> None:
                response = await http.post("/a2a/helper", json={
                    "jsonrpc": "2.0", "id": n, "method": "SendMessage", "params": {
                        "message": {"messageId": f"m-{n}-{immediately}", "role": "ROLE_USER",
                                    "parts": [{"text": "Capital?"}]},
                        "configuration": {"returnImmediately": immediately}}})
                task = response.json()["result"]["task"]
                if not immediately:
                    assert task["status"]["state"] == "TASK_STATE_COMPLETED", task

            for n in range(10):  # warm up both paths
                await api(True)
                await a2a(-n - 1, False)
            for n in range(sends):  # interleaved, so drift affects both alike
                started = time.perf_counter()
                await api(True)
                times["api"].append(time.perf_counter() - started)
                started = time.perf_counter()
                await a2a(n, False)
                times["a2a"].append(time.perf_counter() - started)
                started = time.perf_counter()
                await api(False)
                times["api_accept"].append(time.perf_counter() - started)
                started = time.perf_counter()
                await a2a(n, True)
                times["a2a_accept"].append(time.perf_counter() - started)
            await runtime.wait_idle(120)
    finally:
        await server.stop()
        await runtime.stop()
    return {name: ms(values) for name, values in times.items()}


def calc_server() -> Any:
    from mcp.server.mcpserver import MCPServer

    server: Any = MCPServer(name="calc", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server


async def bench_mcp(calls: int) -> dict[str, Any]:
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    from wakeful.interop.mcp_client import McpTools
    from wakeful.models.base import ToolCall
    from wakeful.models.registry import ModelRegistry
    from wakeful.project.interop import McpServerConfig
    from wakeful.runtime.runtime import Runtime
    from wakeful.store.sqlite import SQLiteStore
    from wakeful.toolkit.context import ToolContext
    from wakeful.toolkit.registry import tool

    @tool(name="py.add")
    def py_add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    app = calc_server().streamable_http_app(json_response=True, transport_security=(
        TransportSecuritySettings(enable_dns_rebinding_protection=False)))
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.create_task(web.serve())
    while not web.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    port = web.servers[0].sockets[0].getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="wakeful-interop-bench-"))
    runtime = Runtime(store=SQLiteStore(folder / "wakeful.db"),
                      models=ModelRegistry(folder / "scripts"))
    runtime.tools.register(py_add)
    await runtime.start()
    mcp = McpTools([
        McpServerConfig(name="stdio", command=sys.executable,
                        args=[SELF, "--mcp-stdio-server"]),
        McpServerConfig(name="http", url=f"http://127.0.0.1:{port}/mcp")])
    await mcp.start(runtime)
    ctx = ToolContext(agent="bench", task_id="t_bench", runtime=runtime)
    names = {"python": "py.add", "stdio": "stdio.add", "http": "http.add"}
    allowed = frozenset(names.values())
    times: dict[str, list[float]] = {kind: [] for kind in names}
    try:
        for n in range(-10, calls):
            for kind, name in names.items():
                call = ToolCall(id=f"c{n}", name=name, arguments=json.dumps({"a": n, "b": 1}))
                started = time.perf_counter()
                outcome = await runtime.tools.call(ctx, allowed, call)
                elapsed = time.perf_counter() - started
                assert outcome.ok and outcome.content.strip() == str(n + 1), outcome
                if n >= 0:
                    times[kind].append(elapsed)
    finally:
        await mcp.close()
        await runtime.stop()
        web.should_exit = True
        await serving
    return {kind: ms(values) for kind, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--mcp-stdio-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mcp_stdio_server:
        import anyio

        anyio.run(calc_server().run_stdio_async)
        return
    a2a = asyncio.run(bench_a2a(args.sends))
    mcp = asyncio.run(bench_mcp(args.calls))
    send_overhead = round(a2a["a2a"]["median"] - a2a["api"]["median"], 2)
    accept_overhead = round(a2a["a2a_accept"]["median"] - a2a["api_accept"]["median"], 2)
    call_overhead = round(mcp["stdio"]["median"] - mcp["python"]["median"], 2)
    rows = [
        (f"task round trip, Wakeful API (median/p90 of {args.sends})",
         f"{a2a['api']['median']} / {a2a['api']['p90']} ms"),
        ("task round trip, A2A SendMessage", f"{a2a['a2a']['median']} / {a2a['a2a']['p90']} ms"),
        ("accept only, POST /api/tasks",
         f"{a2a['api_accept']['median']} / {a2a['api_accept']['p90']} ms"),
        ("accept only, A2A returnImmediately",
         f"{a2a['a2a_accept']['median']} / {a2a['a2a_accept']['p90']} ms"),
        (f"tool call, Python (median/p90 of {args.calls})",
         f"{mcp['python']['median']} / {mcp['python']['p90']} ms"),
        ("tool call, MCP over stdio", f"{mcp['stdio']['median']} / {mcp['stdio']['p90']} ms"),
        ("tool call, MCP over streamable HTTP",
         f"{mcp['http']['median']} / {mcp['http']['p90']} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print(f"rerun: {RERUN}")
    print(json.dumps({
        "a2a_send_overhead_ms": send_overhead, "a2a_accept_overhead_ms": accept_overhead,
        "mcp_call_overhead_ms": call_overhead,
        "mcp_http_call_overhead_ms": round(mcp["http"]["median"] - mcp["python"]["median"], 2),
        "api_round_trip_ms": a2a["api"]["median"], "a2a_round_trip_ms": a2a["a2a"]["median"],
        "python_tool_call_ms": mcp["python"]["median"],
        "mcp_stdio_call_ms": mcp["stdio"]["median"], "mcp_http_call_ms": mcp["http"]["median"],
        "sends": args.sends, "calls": args.calls}))


if __name__ == "__main__":
    main()
