"""CLI views of the inspector: ``wakeful trace``, ``wakeful inspect``, ``wakeful why``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree
from typer import Typer

from wakeful.cli.common import ProjectOption, fail, open_project, out, run_async, with_store
from wakeful.cli.console import event_line, styled
from wakeful.core.records import Event
from wakeful.errors import WakefulError
from wakeful.observe.describe import clip
from wakeful.observe.inspect import Explanation, TaskNode, causal_tree, why_agent
from wakeful.store import Store


def trace(
    project: ProjectOption = Path("."),
    agent: Annotated[str | None, typer.Option(help="Only this agent's events.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task's events.")] = None,
    type: Annotated[str | None, typer.Option(
        "--type", help="Only events whose type starts with this (e.g. tool., task.failed).")
    ] = None,
    trace_id: Annotated[str | None, typer.Option(
        "--trace", help="Only events of this trace (a root task id).")] = None,
    last: Annotated[int, typer.Option(help="Show this many recent events first.")] = 20,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new events as they are recorded.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.")
                        ] = 0.25,
    after: Annotated[int | None, typer.Option(
        "--after", help="Resume after this event position (the # number each line shows): "
        "every later event, in commit order, instead of the last few.")] = None,
) -> None:
    """A filterable tail of events across all agents (works beside a running runtime)."""
    loaded = open_project(project)
    if agent is not None:
        try:
            loaded.agent(agent)
        except WakefulError as exc:
            raise fail(str(exc)) from None

    async def tail(store: Store) -> None:
        async def fetch(after: int, newest: bool, limit: int) -> list[Event]:
            return await store.query_events(
                agent=agent, task_id=task, type_prefix=type, correlation_id=trace_id,
                after_id=after, limit=limit, newest=newest)

        events = await fetch(after, False, 100_000) if after is not None else await fetch(
            0, True, last)
        cursor = (events[-1].id or 0) if events else (after or 0)
        for event in events:
            out.print(event_line(event, position=True), soft_wrap=True)
        while follow:
            await asyncio.sleep(interval)
            for event in await fetch(cursor, False, 1000):
                cursor = event.id or cursor
                out.print(event_line(event, position=True), soft_wrap=True)

    try:
        run_async(lambda: with_store(loaded, tail))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _render(node: TaskNode, tree: Tree | None = None) -> Tree:
    t = node.task
    outcome = (f" [red]{escape(clip(t.error, 80))}[/]" if t.error
               else f" → {escape(clip(t.result, 60))}" if t.result else "")
    label = (f"[bold]{escape(t.id)}[/] {escape(t.agent)} "
             f"[{styled(t.state).style}]{t.state.value}[/] "
             f"step {t.step}: {escape(clip(t.instruction, 60))}{outcome}")
    branch = tree.add(label) if tree is not None else Tree(label)
    for event in node.events:
        branch.add(event_line(event))
    for child in node.children:
        _render(child, branch)
    return branch


def inspect(
    task_id: Annotated[str, typer.Argument(help="The task to inspect.")],
    project: ProjectOption = Path("."),
) -> None:
    """The causal tree of a task: what it caused, recursively, and where it failed."""
    loaded = open_project(project)
    root = run_async(lambda: with_store(loaded, lambda s: causal_tree(s, task_id)))
    out.print(_render(root))


def why(
    agent: Annotated[str, typer.Argument(help="The agent to explain.")],
    project: ProjectOption = Path("."),
) -> None:
    """Why an agent is sleeping, paused or blocked right now, task by task."""
    loaded = open_project(project)

    async def explain(store: Store) -> Explanation:
        definition = loaded.agent(agent)
        saved = await store.load_agents()
        return await why_agent(store, definition, saved.get(agent))

    answer = run_async(lambda: with_store(loaded, explain))
    out.print(f"[bold]{escape(answer.agent)}[/] is [{styled(answer.state).style}]"
              f"{answer.state.value}[/]" + (f" ({escape(answer.reason)})" if answer.reason
                                            else ""))
    for line in answer.running:
        out.print(Text(f"  running {line}"), highlight=False)
    for blocker in answer.blockers:
        prefix = f"{blocker.task_id}: " if blocker.task_id else ""
        out.print(Text(f"  {prefix}{blocker.what}"), highlight=False, soft_wrap=True)
    if not answer.running and not answer.blockers:
        out.print("  nothing to do: no queued, running or waiting tasks")
    for line in answer.wakes:
        out.print(Text(f"  next wake-up: {line}"), highlight=False, soft_wrap=True)


def replay(
    run_id: Annotated[str | None, typer.Argument(help="The run to replay (default: the last).")
                      ] = None,
    project: ProjectOption = Path("."),
    keep: Annotated[Path | None, typer.Option(
        help="Keep the replayed store in this folder, to inspect it with the same task ids.")
    ] = None,
) -> None:
    """Re-run a recorded run offline without a model; compare its final state."""
    from wakeful.runtime.replay import replay as replay_run

    loaded = open_project(project)
    result = run_async(lambda: replay_run(loaded, run_id, keep))
    out.print(f"Replayed run [bold]{result.run_id}[/]: {len(result.recorded)} recorded tasks, "
              f"{len(result.replayed)} replayed.", highlight=False)
    if result.identical:
        out.print("[green]Same final state:[/] every task ended as recorded.")
    else:
        out.print(f"[red]Diverged in {len(result.differences)} places:[/]")
        for d in result.differences:
            out.print(Text(f"  {d.task_id} {d.field}: recorded {clip(str(d.recorded), 60)!r}, "
                           f"replayed {clip(str(d.replayed), 60)!r}"), highlight=False)
    if result.store_path is not None:
        out.print(f"Replayed store: {escape(str(result.store_path))} (inspect it with "
                  "'wakeful trace' or 'wakeful inspect' on a project pointing at it).",
                  highlight=False)
    if not result.identical:
        raise typer.Exit(1)


def register(app: Typer) -> None:
    """Add the inspector's commands to the ``wakeful`` app."""
    for command in (trace, inspect, why, replay):
        app.command()(command)
