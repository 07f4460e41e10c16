"""Tools: schemas from type hints, and every way a tool call can go wrong in a task."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pytest
from pydantic import Field

from wakeful.core.states import TaskState
from wakeful.models.base import Message, StreamEvent, ToolCall, ToolSpec
from wakeful.models.scripted import ScriptedModel
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import ToolRegistry, make_tool, tool

if TYPE_CHECKING:
    from conftest import AgentFactory, EventQuery, RuntimeFactory, ScriptFactory


# Tools used by the tests (module level: their hints must resolve from globals) -----
async def search(
    ctx: ToolContext,
    query: Annotated[str, Field(description="what to look for")],
    limit: Annotated[int, Field(ge=1, le=10, description="how many results")] = 3,
    mode: Literal["fast", "deep"] = "fast",
    tags: list[str] | None = None,
) -> list[str]:
    """Search the archive.

    This second paragraph is not part of the description.
    """
    return [f"{ctx.agent}:{query}:{limit}:{mode}:{tags}"]


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def explode(reason: str) -> str:
    """Always raises."""
    raise ValueError(f"kaboom {reason}")


@tool(name="shout", description="Upper-case a text.")
async def _shout_impl(text: str) -> str:
    await asyncio.sleep(0)
    return text.upper()


# Schema derivation ---------------------------------------------------------------
def test_schema_derived_from_type_hints() -> None:
    made = make_tool(search)
    assert made.name == "search"
    assert made.description == "Search the archive."
    assert made.wants_context is True
    schema = made.parameters
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert "ctx" not in schema["properties"]
    assert set(schema["properties"]) == {"query", "limit", "mode", "tags"}
    assert schema["required"] == ["query"]
    assert schema["properties"]["query"]["type"] == "string"
    assert schema["properties"]["query"]["description"] == "what to look for"
    limit = schema["properties"]["limit"]
    assert (limit["type"], limit["default"], limit["minimum"], limit["maximum"]) == (
        "integer", 3, 1, 10)
    assert limit["description"] == "how many results"
    assert schema["properties"]["mode"]["enum"] == ["fast", "deep"]
    assert "title" not in schema
    spec = made.spec
    assert isinstance(spec, ToolSpec)
    assert spec.to_openai()["function"] == {"name": "search",
                                            "description": "Search the archive.",
                                            "parameters": schema}


def test_schema_without_context_and_decorator_options() -> None:
    made = make_tool(add)
    assert made.wants_context is False
    assert sorted(made.parameters["required"]) == ["a", "b"]
    assert _shout_impl.name == "shout"
    assert _shout_impl.description == "Upper-case a text."
    assert make_tool(add, name="plus").name == "plus"


def test_tools_that_cannot_be_described_are_rejected() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def variadic(*args: int) -> int:
        return sum(args)

    with pytest.raises(TypeError, match=r"parameter 'x' needs a type hint"):
        make_tool(untyped)
    with pytest.raises(TypeError, match=r"\*args/\*\*kwargs"):
        make_tool(variadic)
    registry = ToolRegistry([make_tool(add)])
    with pytest.raises(ValueError, match="'add' is already registered"):
        registry.register(add)
    assert "add" in registry and "sub" not in registry


async def test_registry_call_outcomes_directly() -> None:
    registry = ToolRegistry([make_tool(search), make_tool(add), explode])
    ctx = ToolContext(agent="alice", task_id="t_1", runtime=None)  # type: ignore[arg-type]
    allowed = frozenset({"search", "add", "explode"})

    ok = await registry.call(ctx, allowed, ToolCall("c1", "search", '{"query": "x"}'))
    assert ok.ok and json.loads(ok.content) == ["alice:x:3:fast:None"]
    assert (await registry.call(ctx, allowed, ToolCall("c2", "add", '{"a": 2, "b": 3}'))
            ).content == "5"
    bad_range = await registry.call(ctx, allowed,
                                    ToolCall("c3", "search", '{"query": "x", "limit": 99}'))
    assert bad_range.error_kind == "invalid_args"
    assert "limit: Input should be less than or equal to 10" in bad_range.content
    empty = await registry.call(ctx, allowed, ToolCall("c4", "search", ""))
    assert empty.error_kind == "invalid_args" and "query: Field required" in empty.content
    raised = await registry.call(ctx, allowed, ToolCall("c5", "explode", '{"reason": "r"}'))
    assert raised.error_kind == "error"
    assert raised.traceback is not None and "ValueError: kaboom r" in raised.traceback


# Tool calls inside a running task ---------------------------------------------------
def two_steps(call: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"say": "calling", "tool_calls": [call]}, {"say": "saw: {last_tool_result}"}]


@pytest.mark.parametrize(
    ("call", "event_type", "reason", "expected"),
    [
        pytest.param({"tool": "nope"}, "tool.refused", "unknown",
                     ["unknown tool 'nope'", "tools you may call: explode, note, word_count"],
                     id="unknown"),
        pytest.param({"tool": "current_time"}, "tool.refused", "forbidden",
                     ["tool 'current_time' is not granted to agent 'worker'", "refused"],
                     id="forbidden"),
        pytest.param({"tool": "word_count", "raw_args": "{bad"}, "tool.invalid_args",
                     "invalid_json",
                     ["arguments for tool 'word_count' are not valid JSON", "line 1 column 2"],
                     id="not-json"),
        pytest.param({"tool": "word_count", "raw_args": "[1, 2]"}, "tool.invalid_args",
                     "invalid_args",
                     ["arguments for tool 'word_count' must be a JSON object, got list"],
                     id="not-an-object"),
        pytest.param({"tool": "word_count", "args": {"txt": "a b"}}, "tool.invalid_args",
                     "invalid_args",
                     ["arguments for tool 'word_count' do not match its schema",
                      "text: Field required", "txt: Extra inputs are not permitted"],
                     id="missing-and-extra-field"),
        pytest.param({"tool": "word_count", "args": {"text": 5}}, "tool.invalid_args",
                     "invalid_args",
                     ["arguments for tool 'word_count' do not match its schema",
                      "text: Input should be a valid string"],
                     id="wrong-type"),
        pytest.param({"tool": "explode", "args": {"reason": "now"}}, "tool.error", "error",
                     ["tool 'explode' failed: ValueError: kaboom now"], id="tool-raises"),
    ],
)
async def test_failed_tool_call_is_reported_to_the_model_and_recorded(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery, call: dict[str, Any], event_type: str, reason: str,
    expected: list[str],
) -> None:
    rt = await make_runtime(
        [agent_def("worker", tools=["note", "word_count", "explode"], policy="never")],
        {"m": script(two_steps(call))}, tools=[explode])
    task = await rt.create_task("worker", "job")
    done = await rt.wait_task(task.id, timeout=5)

    # The task carried on: the model saw the error and finished.
    assert done.state is TaskState.DONE, done.error
    assert done.step == 2
    assert done.tool_calls == 1
    messages = await rt.store.load_messages(task.id)
    tool_messages = [m for m in messages if m["role"] == "tool"]
    assert len(tool_messages) == 1
    content = tool_messages[0]["content"]
    assert content.startswith("error: ")
    for text in expected:
        assert text in content
    assert tool_messages[0]["tool_call_id"] == "call_0_0"
    assert tool_messages[0]["name"] == call["tool"]
    assert done.result == f"saw: {content}"

    recorded = await events(rt, task_id=task.id, types=[event_type])
    assert len(recorded) == 1
    data = recorded[0].data
    assert data["reason"] == reason
    assert data["tool"] == call["tool"]
    assert data["ok"] is False
    assert recorded[0].agent == "worker"
    if reason == "error":
        assert "Traceback (most recent call last)" in data["traceback"]
        assert "ValueError: kaboom now" in data["traceback"]
    else:
        assert "traceback" not in data
    assert await events(rt, task_id=task.id, types=["tool.call"]) == []


async def test_successful_tool_call_is_recorded(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery,
) -> None:
    rt = await make_runtime(
        [agent_def("worker", tools=["word_count", "shout"])],
        {"m": script([{"tool_calls": [{"tool": "word_count", "args": {"text": "a b c"}},
                                      {"tool": "shout", "args": {"text": "{instruction}"}}]},
                      {"say": "{last_tool_result}"}])},
        tools=[_shout_impl])
    task = await rt.create_task("worker", "quiet please")
    done = await rt.wait_task(task.id, timeout=5)
    assert done.state is TaskState.DONE
    assert done.result == "QUIET PLEASE"
    assert done.tool_calls == 2
    tool_messages = [m for m in await rt.store.load_messages(task.id) if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["3", "QUIET PLEASE"]
    calls = await events(rt, task_id=task.id, types=["tool.call"])
    assert [(e.data["tool"], e.data["ok"], e.data["result"]) for e in calls] == [
        ("word_count", True, "3"), ("shout", True, "QUIET PLEASE")]
    assert "reason" not in calls[0].data


async def test_five_consecutive_failed_tool_calls_fail_the_task(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    events: EventQuery,
) -> None:
    # Five different malformed calls (identical ones would trip the repeat guard first).
    bad = [{"say": "trying", "tool_calls": [{"tool": "word_count", "raw_args": f"{{bad{i}"}]}
           for i in range(5)]
    model = script([*bad, {"say": "never reached"}])
    rt = await make_runtime([agent_def("worker", tools=["word_count"])], {"m": model})
    task = await rt.create_task("worker", "job")
    failed = await rt.wait_task(task.id, timeout=5)

    assert failed.state is TaskState.FAILED
    assert failed.error_kind == "tool"
    assert "gave up after 5 consecutive failed tool calls" in (failed.error or "")
    assert failed.step == 5
    assert model.calls == 5
    # Not retryable: the on-failure policy leaves it alone.
    assert failed.attempt == 0
    assert len(await rt.store.list_tasks(agent="worker")) == 1
    recorded = await events(rt, task_id=task.id, types=["task.failed"])
    assert [e.data["kind"] for e in recorded] == ["tool"]
    assert recorded[0].data["retryable"] is False
    # The five failures were all stored, so the failure can be inspected.
    tool_messages = [m for m in await rt.store.load_messages(task.id) if m["role"] == "tool"]
    assert len(tool_messages) == 5
    assert rt.agent("worker").state.value == "running"


async def test_five_failures_in_one_step_also_fail_the_task(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    step = {"tool_calls": [{"tool": f"nope{i}"} for i in range(5)]}
    rt = await make_runtime([agent_def("worker")], {"m": script([step, {"say": "x"}])})
    task = await rt.create_task("worker", "job")
    failed = await rt.wait_task(task.id, timeout=5)
    assert (failed.state, failed.error_kind, failed.step) == (TaskState.FAILED, "tool", 1)


async def test_a_successful_call_resets_the_failure_count(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    bad = [{"tool_calls": [{"tool": f"nope{i}"}]} for i in range(8)]  # distinct: no loop
    good = {"tool_calls": [{"tool": "word_count", "args": {"text": "x"}}]}
    rt = await make_runtime([agent_def("worker", tools=["word_count"])],
                            {"m": script([*bad[:4], good, *bad[4:], {"say": "ok"}])})
    task = await rt.create_task("worker", "job")
    done = await rt.wait_task(task.id, timeout=5)
    assert done.state is TaskState.DONE, done.error
    assert done.step == 10


class RecordingModel(ScriptedModel):
    """A scripted model that remembers which tools it was offered."""

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        super().__init__(ScriptedModel.from_steps(steps).script)
        self.offered: list[list[str]] = []

    async def stream(self, messages: list[Message], tools: list[ToolSpec]
                     ) -> AsyncIterator[StreamEvent]:
        self.offered.append([t.name for t in tools])
        async for item in super().stream(messages, tools):
            yield item


async def test_model_is_offered_only_granted_tools(
    make_runtime: RuntimeFactory, agent_def: AgentFactory,
) -> None:
    model = RecordingModel([{"tool_calls": [{"tool": "note", "args": {"text": "x"}}]},
                            {"say": "done"}])
    rt = await make_runtime([agent_def("worker", tools=["word_count", "note", "ghost"])],
                            {"m": model})
    task = await rt.create_task("worker", "job")
    assert (await rt.wait_task(task.id, timeout=5)).state is TaskState.DONE
    # Sorted, and a granted name that no tool has ("ghost") is not described.
    assert model.offered == [["note", "word_count"], ["note", "word_count"]]


async def test_builtin_tools_see_the_runtime(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime(
        [agent_def("boss", tools=["list_agents", "list_tasks", "get_task"]), agent_def("idle")],
        {"m": script([{"tool_calls": [{"tool": "list_agents"},
                                      {"tool": "list_tasks", "args": {"agent": "boss"}}]},
                      {"say": "{last_tool_result}"}])})
    task = await rt.create_task("boss", "report")
    done = await rt.wait_task(task.id, timeout=5)
    assert done.state is TaskState.DONE
    listed = json.loads(done.result or "")
    assert [(t["id"], t["state"]) for t in listed] == [(task.id, "running")]
    tool_messages = [m for m in await rt.store.load_messages(task.id) if m["role"] == "tool"]
    agents = json.loads(tool_messages[0]["content"])
    assert {a["name"]: (a["state"], a["running"]) for a in agents} == {
        "boss": ("running", 1), "idle": ("running", 0)}


async def test_oversized_tool_arguments_are_refused_and_not_kept(
        make_runtime: Any, agent_def: Any, script: Any) -> None:
    huge = '{"text": "' + "word " * 200 + '"}'
    model = script([{"say": "counting", "tool_calls": [{"tool": "word_count",
                                                        "raw_args": huge}]},
                    {"say": "done"}])
    rt = await make_runtime([agent_def("a", tools=["word_count"])], {"m": model})
    rt.tools.max_argument_chars = 100
    record = await rt.wait_task((await rt.create_task("a", "count")).id, 10)
    messages = await rt.store.load_messages(record.id)
    [call] = [c for m in messages if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    assert len(call["function"]["arguments"]) < 100
    assert "over the limit of 100" in call["function"]["arguments"]
    [result] = [m["content"] for m in messages if m["role"] == "tool"]
    assert "limit is 100" in result
