"""Benchmark: the runtime's own cost around real model calls over HTTP.

What is measured
----------------
Both parts talk to the local OpenAI-compatible test server
(``python -m wakeful.testing``), started as a separate process on
127.0.0.1 so that it does not share this interpreter, through the OpenAI provider
(official ``openai`` SDK, streaming, as agents use it). The store is a real SQLite file.

1. **Overhead per agent step.** One agent runs a task of ``STEPS`` steps against the
   server with zero latency; each step is a streamed model call that asks for the
   ``note`` tool, the tool call, and the durable commit of the step. In the same run,
   the raw SDK makes the same streamed calls (same request bodies, prepared in
   advance, same server, same HTTP stack: the SDK's aiohttp client) with nothing
   around them, the way the provider makes them (``client.post``, plain JSON
   chunks). Overhead per step = runtime time per step minus raw SDK time per call.
   Rounds alternate (raw, runtime, raw, runtime...) so that drift on a shared machine
   hits both alike; the figure is the median over rounds. For reference, the SDK's
   typed ``chat.completions.create`` is timed too.
2. **1,000 agents, one call each, 200 ms server latency**, provider concurrency limit
   1,000: wall time from the first ``create_task`` until every task is done
   (``wait_idle``), connections opened cold. Every task is checked ``done`` in the store.
   For scale, the same 1,000 calls made by the bare SDK at once (one fresh client,
   nothing else running) are timed too: that is the floor the SDK itself sets.

Run it with ``python benchmarks/models.py``. The last line of its output is one JSON
object with the headline figures (units in the key names).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STEPS = 40  # steps per task in the overhead part (each asks for one tool call)
ROUNDS = 15
AGENTS = 1000
LATENCY_MS = 200
RERUN = "python benchmarks/models.py"
REPLY = "done"


class BenchmarkError(RuntimeError):
    """A run did not end as expected."""


@contextmanager
def model_server(*args: str) -> Iterator[str]:
    """Start the test server in its own process; yield its base URL."""
    command = [sys.executable, "-m", "wakeful.testing", "--reply", REPLY, *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            raise BenchmarkError(f"the model server did not start: {line!r} "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def provider(base_url: str, concurrency: int) -> Any:
    """The provider under test: the local server, no key, no retries (none expected)."""
    from wakeful.models.config import ProviderConfig

    return ProviderConfig(base_url=base_url, api_key_required=False, concurrency=concurrency,
                          timeout_s=120, max_retries=0)


def request_bodies(model: Any) -> list[dict[str, Any]]:
    """The exact request bodies a STEPS-step task sends, for the raw SDK to replay."""
    from wakeful.models.base import Message, ToolCall

    messages = [Message(role="system", content="You are bench, a benchmark agent."),
                Message(role="user", content="benchmark task")]
    tools = model.provider_tools
    bodies = []
    for step in range(STEPS + 1):
        body = model.params(messages, tools)
        body.update(stream=True, stream_options={"include_usage": True})
        bodies.append(body)
        call = ToolCall(id=f"call_{step}", name="note",
                        arguments=json.dumps({"text": f"step {step}"}))
        messages += [Message(role="assistant", tool_calls=(call,)),
                     Message(role="tool", content=f"noted ({step + 1} notes in this task)",
                             tool_call_id=call.id, name="note")]
    return bodies


async def raw_round(client: Any, bodies: list[dict[str, Any]], typed: bool = False) -> float:
    """Seconds per call for the bare SDK: the same streamed requests, nothing around."""
    import openai

    started = time.perf_counter()
    for body in bodies:
        if typed:
            stream = await client.chat.completions.create(**body)
        else:
            stream = await client.post("/chat/completions", body=body, cast_to=object,
                                       stream=True, stream_cls=openai.AsyncStream[object])
        async with stream:
            async for _ in stream:
                pass
    return (time.perf_counter() - started) / len(bodies)


async def runtime_round(runtime: Any) -> float:
    """Seconds per step for one task of STEPS + 1 steps run by the runtime."""
    from wakeful.core.states import TaskState

    started = time.perf_counter()
    record = await runtime.create_task("bench", "benchmark task")
    done = await runtime.wait_task(record.id, timeout=120)
    elapsed = time.perf_counter() - started
    if done.state is not TaskState.DONE or done.step != STEPS + 1 or done.result != REPLY:
        raise BenchmarkError(f"task {done.id}: state={done.state.value} step={done.step} "
                             f"error={done.error!r}")
    return elapsed / done.step


async def measure_overhead(base_url: str, directory: Path) -> dict[str, Any]:
    import openai

    from wakeful import AgentDefinition, Runtime, SQLiteStore
    from wakeful.models.registry import ModelRegistry

    models = ModelRegistry(directory, providers={"local": provider(base_url, concurrency=8)})
    agent = AgentDefinition(name="bench", model="local:bench", tools=["note"],
                            max_steps=STEPS + 5)
    runtime = Runtime(store=SQLiteStore(directory / "overhead.db"), models=models,
                      agents=[agent])
    model = models.get("local:bench")
    model.provider_tools = runtime.tools.specs(["note"])  # type: ignore[attr-defined]
    bodies = request_bodies(model)
    # The same HTTP stack the provider uses (the SDK's aiohttp client), so that the
    # difference is Wakeful's own work, not a difference of transports.
    client = openai.AsyncOpenAI(api_key="none", base_url=base_url, max_retries=0,
                                http_client=openai.DefaultAioHttpClient(trust_env=False))
    await runtime.start()
    try:
        await raw_round(client, bodies[:5])  # warm up every path
        await raw_round(client, bodies[:5], typed=True)
        await runtime_round(runtime)
        raw, typed, ours = [], [], []
        for _ in range(ROUNDS):
            raw.append(await raw_round(client, bodies))
            ours.append(await runtime_round(runtime))
            typed.append(await raw_round(client, bodies, typed=True))
    finally:
        await runtime.stop()
        await client.close()
    overheads = [o - r for o, r in zip(ours, raw, strict=True)]
    return {"raw_call_ms": statistics.median(raw) * 1000,
            "typed_call_ms": statistics.median(typed) * 1000,
            "runtime_step_ms": statistics.median(ours) * 1000,
            "step_overhead_ms": statistics.median(overheads) * 1000,
            "overhead_min_ms": min(overheads) * 1000,
            "overhead_max_ms": max(overheads) * 1000,
            "steps_per_round": STEPS + 1, "rounds": ROUNDS}


async def measure_agents(base_url: str, directory: Path) -> dict[str, Any]:
    from wakeful import AgentDefinition, Runtime, SQLiteStore
    from wakeful.core.states import TaskState
    from wakeful.models.registry import ModelRegistry

    models = ModelRegistry(directory, providers={"local": provider(base_url, AGENTS)})
    names = [f"agent-{i:04d}" for i in range(AGENTS)]
    store = SQLiteStore(directory / "agents.db")
    runtime = Runtime(store=store, models=models,
                      agents=[AgentDefinition(name=n, model="local:bench") for n in names])
    await runtime.start()
    try:
        started = time.perf_counter()
        records = await asyncio.gather(*(runtime.create_task(n, f"task {i}")
                                         for i, n in enumerate(names)))
        await runtime.wait_idle(120)
        wall = time.perf_counter() - started
        peak = models.provider("local").limits.peak_in_flight
        stored = {r.id: r for r in await store.list_tasks()}
    finally:
        await runtime.stop()
    bad = [r.id for r in records
           if stored[r.id].state is not TaskState.DONE or stored[r.id].result != REPLY]
    if bad:
        raise BenchmarkError(f"{len(bad)} of {AGENTS} tasks did not finish 'done' "
                             f"(e.g. {stored[bad[0]].error!r})")
    return {"agents": AGENTS, "wall_s": wall, "peak_in_flight": peak}


async def measure_raw_burst(base_url: str) -> float:
    """Seconds for AGENTS concurrent bare-SDK calls from one fresh client."""
    import openai

    client = openai.AsyncOpenAI(api_key="none", base_url=base_url, max_retries=0,
                                http_client=openai.DefaultAioHttpClient(trust_env=False,
                                                                        limits=_limits()))
    body = {"model": "bench", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": "You are agent-0000."},
                         {"role": "user", "content": "task 0"}]}

    async def one() -> None:
        stream = await client.post("/chat/completions", body=body, cast_to=object,
                                   stream=True, stream_cls=openai.AsyncStream[object])
        async with stream:
            async for _ in stream:
                pass

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(AGENTS)))
        return time.perf_counter() - started
    finally:
        await client.close()


def _limits() -> Any:
    import httpx2

    return httpx2.Limits(max_connections=AGENTS, max_keepalive_connections=AGENTS)


def show(overhead: dict[str, Any], agents: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    table = Table(title="Overhead per agent step (OpenAI provider, streamed, zero latency)")
    for column in ("raw SDK call ms", "SDK create() ms", "runtime step ms",
                   "overhead ms (median)", "min..max ms", "steps x rounds"):
        table.add_column(column, justify="right")
    table.add_row(f"{overhead['raw_call_ms']:.3f}", f"{overhead['typed_call_ms']:.3f}",
                  f"{overhead['runtime_step_ms']:.3f}",
                  f"{overhead['step_overhead_ms']:.3f}",
                  f"{overhead['overhead_min_ms']:.3f}..{overhead['overhead_max_ms']:.3f}",
                  f"{overhead['steps_per_round']} x {overhead['rounds']}")
    console.print(table)
    table = Table(title=f"{AGENTS:,} agents x 1 call, {LATENCY_MS} ms server latency, "
                        f"concurrency limit {AGENTS:,}")
    for column in ("agents", "wall s", "overhead s", "peak in flight",
                   "bare SDK, same calls, s"):
        table.add_column(column, justify="right")
    table.add_row(f"{agents['agents']:,}", f"{agents['wall_s']:.3f}",
                  f"{agents['wall_s'] - LATENCY_MS / 1000:.3f}",
                  f"{agents['peak_in_flight']:,}", f"{agents['raw_burst_s']:.3f}")
    console.print(table)
    console.print("A step = one streamed model call that asks for a tool, the tool call and the "
                  "step's durable commit.\nOverhead = runtime time per step - raw SDK time per "
                  "identical call, same run, alternating rounds.\nThe server runs in its own "
                  "process on 127.0.0.1; every task verified 'done' in the SQLite store.",
                  soft_wrap=True)
    console.print(f"Rerun: {RERUN}", soft_wrap=True)


async def main_async() -> tuple[dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="wakeful-bench-models-") as tmp:
        directory = Path(tmp)
        with model_server("--tool-steps", str(STEPS)) as url:
            overhead = await measure_overhead(url, directory)
        with model_server("--latency-ms", str(LATENCY_MS)) as url:
            agents = await measure_agents(url, directory)
        with model_server("--latency-ms", str(LATENCY_MS)) as url:
            agents["raw_burst_s"] = await measure_raw_burst(url)
    return overhead, agents


def main() -> None:
    try:
        overhead, agents = asyncio.run(main_async())
    except BenchmarkError as exc:
        sys.exit(f"benchmark failed: {exc}")
    show(overhead, agents)
    print(json.dumps({
        "step_overhead_ms": round(overhead["step_overhead_ms"], 4),
        "raw_sdk_call_ms": round(overhead["raw_call_ms"], 4),
        "sdk_create_call_ms": round(overhead["typed_call_ms"], 4),
        "runtime_step_ms": round(overhead["runtime_step_ms"], 4),
        "agents_1000_wall_s": round(agents["wall_s"], 4),
        "agents_1000_peak_in_flight": agents["peak_in_flight"],
        "raw_sdk_1000_calls_wall_s": round(agents["raw_burst_s"], 4),
        "server_latency_ms": LATENCY_MS,
    }), flush=True)


if __name__ == "__main__":
    main()
