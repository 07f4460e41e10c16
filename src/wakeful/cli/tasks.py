"""Task commands: ``wakeful tasks`` lists them, ``wakeful task ID`` shows one with its
conversation, ``wakeful start-task`` queues one for a running (or the next) runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from wakeful.cli.common import (
    ProjectOption,
    fail,
    open_project,
    out,
    run_async,
    store_where,
    with_store,
)
from wakeful.cli.console import tasks_table
from wakeful.cli.faults import session
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState
from wakeful.errors import WakefulError
from wakeful.project.loader import Project
from wakeful.runtime.runtime import Runtime
from wakeful.runtime.tasks import instruction_problem
from wakeful.store import Store


def tasks(
    project: ProjectOption = Path("."),
    agent: Annotated[str | None, typer.Option(help="Only this agent's tasks.")] = None,
    state: Annotated[TaskState | None, typer.Option(help="Only tasks in this state.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (newest).")] = 50,
) -> None:
    """List tasks, newest last."""
    loaded = open_project(project)
    if agent is not None:
        run_async(lambda: _check_agent(loaded, agent))
    records = run_async(lambda: with_store(loaded, lambda s: s.list_tasks(
        agent=agent, states=[state] if state else None)))
    out.print(tasks_table(records[-limit:], title=f"Tasks ({len(records)})"))


async def _check_agent(project: Project, name: str) -> None:
    project.agent(name)


def show_task(
    task_id: Annotated[str, typer.Argument(help="The task id.")],
    project: ProjectOption = Path("."),
) -> None:
    """Show one task and its whole conversation."""
    loaded = open_project(project)

    async def read(store: Store) -> tuple[TaskRecord | None, list[dict[str, Any]]]:
        return await store.get_task(task_id), await store.load_messages(task_id)

    record, messages = run_async(lambda: with_store(loaded, read))
    if record is None:
        raise fail(f"unknown task {task_id!r}")
    out.print(tasks_table([record], title=f"Task {record.id}"))
    for message in messages:
        calls = message.get("tool_calls") or []
        text = message.get("content") or ""
        label = message["role"] + (f" ({message.get('name')})" if message.get("name") else "")
        out.print(f"[bold]{escape(label)}:[/] {escape(str(text))}", highlight=False,
                  soft_wrap=True)
        for call in calls:
            fn = call.get("function", {})
            out.print(f"    → {escape(str(fn.get('name')))}({escape(str(fn.get('arguments')))})",
                      highlight=False)


def start_task(
    agent: Annotated[str, typer.Argument(help="The agent to run the task.")],
    instruction: Annotated[str, typer.Argument(help="What the task should do.")],
    project: ProjectOption = Path("."),
) -> None:
    """Queue a task; a running runtime picks it up, otherwise the next `wakeful run`."""
    loaded = open_project(project)

    async def create() -> TaskRecord:
        loaded.agent(agent)
        runtime = Runtime.from_project(loaded)

        async def queue() -> TaskRecord:
            from wakeful.runtime.agent import new_task_record

            problem = instruction_problem(instruction)
            if problem is not None:
                raise WakefulError(problem)
            record = new_task_record(agent, instruction, created_by="cli")
            await runtime.store.create_task(record)
            runtime.events.emit("task.created", agent=agent, task_id=record.id, data={
                "instruction": instruction[:500], "created_by": "cli"})
            return record

        return await session(runtime.store, store_where(loaded), queue)

    record = run_async(create)
    out.print(f"Queued task [bold]{record.id}[/] for {agent}.", highlight=False)
