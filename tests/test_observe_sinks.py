"""Sinks fed by the event stream: OpenTelemetry spans and structured JSON logs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from typer.testing import CliRunner

from wakeful.cli import app
from wakeful.core.records import Event
from wakeful.core.states import TaskState
from wakeful.observe.logs import install_logs
from wakeful.observe.otel import install_tracing
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import tool

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory, ScriptFactory


@tool
async def hand_off(ctx: ToolContext, agent: str, instruction: str) -> str:
    """Start a task on another agent."""
    return (await ctx.runtime.create_task(agent, instruction)).id


async def test_spans_for_tasks_model_and_tool_calls_with_cross_agent_links(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    models = {
        "boss": script([{"tool_calls": [{"tool": "hand_off",
                                         "args": {"agent": "worker", "instruction": "w"}}]},
                        {"say": "boss done"}], latency_ms=20),
        "worker": script([{"tool_calls": [{"tool": "nope"}]}, {"say": "worker done"}],
                         latency_ms=20),
    }
    agents = [agent_def("boss", model="boss", tools=["hand_off"]),
              agent_def("worker", model="worker")]
    rt = await make_runtime(agents, models, tools=[hand_off], start=False)
    exporter = InMemorySpanExporter()
    provider, builder = install_tracing(rt.events, exporter)
    await rt.start()
    root = await rt.create_task("boss", "lead")
    await rt.wait_idle(5)
    builder.close()
    provider.force_flush()
    spans = exporter.get_finished_spans()
    by_name: dict[str, list] = {}  # type: ignore[type-arg]
    for span in spans:
        by_name.setdefault(span.name, []).append(span)

    boss, worker = by_name["task boss"][0], by_name["task worker"][0]
    assert boss.attributes["wakeful.task_id"] == root.id
    assert worker.attributes["wakeful.trace_id"] == root.id
    # Delegated work links back to the task that caused it, across agents.
    assert [link.context.span_id for link in worker.links] == [boss.context.span_id]
    # Model and tool calls are children of their task, inside its time span.
    boss_children = [s for s in spans if s.parent and s.parent.span_id == boss.context.span_id]
    assert sorted(s.name for s in boss_children) == [
        "model scripted", "model scripted", "tool hand_off"]
    for child in boss_children:
        assert boss.start_time <= child.start_time <= child.end_time <= boss.end_time
    refused = by_name["tool nope"][0]
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.parent is not None and refused.parent.span_id == worker.context.span_id
    assert by_name["model scripted"][0].attributes["wakeful.input_tokens"] > 0
    await rt.stop()
    provider.shutdown()


async def test_failed_task_span_has_error_status_and_kind(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime([agent_def("w", policy="never")],
                            {"m": script([{"error": "provider down"}])}, start=False)
    exporter = InMemorySpanExporter()
    provider, _ = install_tracing(rt.events, exporter)
    await rt.start()
    task = await rt.create_task("w", "x")
    assert (await rt.wait_task(task.id, 30)).state is TaskState.FAILED
    provider.force_flush()
    [span] = [s for s in exporter.get_finished_spans() if s.name == "task w"]
    assert span.status.status_code is StatusCode.ERROR
    assert "provider down" in (span.status.description or "")
    assert span.attributes["wakeful.error_kind"] == "model"
    await rt.stop()
    provider.shutdown()


async def test_json_logs_mirror_events_and_a_broken_sink_breaks_nothing(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime([agent_def("w")], {"m": script([{"say": "ok"}])}, start=False)
    stream = io.StringIO()
    install_logs(rt.events, stream)

    def broken(event: Event) -> None:
        raise RuntimeError("sink bug")

    rt.events.add_listener(broken)
    await rt.start()
    task = await rt.create_task("w", "x")
    assert (await rt.wait_task(task.id, 30)).state is TaskState.DONE
    # wait_task may answer from the store (its poll) before the task's loop, on a busy
    # machine, has published the step's events: idle means the loop has ended.
    await rt.wait_idle(30)
    assert rt.events.listener_errors > 0
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    done = [entry for entry in lines if entry["event"] == "task.state" and entry["to"] == "done"]
    assert done and done[0]["task_id"] == task.id and done[0]["level"] == "info"
    assert done[0]["correlation_id"] == task.id
    assert not any(entry["event"] == "model.token" for entry in lines)


def test_run_writes_json_logs(tmp_path: Path) -> None:
    folder = tmp_path / "team"
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(folder)]).exit_code == 0
    log = tmp_path / "events.jsonl"
    result = runner.invoke(app, ["run", "-p", str(folder), "--until-idle", "--plain",
                                 "--log-json", str(log)])
    assert result.exit_code == 0, result.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(e["event"] == "task.state" and e.get("to") == "done" for e in entries) == 10
    assert {e["agent"] for e in entries if e["agent"]} == {
        "coordinator", "researcher", "writer", "monitor"}
