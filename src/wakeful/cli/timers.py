"""``wakeful timers``: every timer and wait in the store, soonest first.

It reads the store, so it works beside a running runtime or after one stopped: the
schedules of each agent (from its file, or set by a model), agents asleep until a time,
and tasks sleeping or waiting for events, with when each is due next and what it does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from wakeful.core.timers import Timer
from wakeful.core.timespecs import stamp
from wakeful.store import Store


def until(due: float | None, now: float) -> str:
    """'in 4m 10s', '3s ago', or '-'."""
    if due is None:
        return "-"
    delta = due - now
    size = abs(delta)
    if size < 60:
        text = f"{size:.0f}s"
    elif size < 3600:
        text = f"{int(size // 60)}m {int(size % 60):02d}s"
    elif size < 172800:
        text = f"{int(size // 3600)}h {int(size % 3600 // 60):02d}m"
    else:
        text = f"{size / 86400:.1f}d"
    return f"in {text}" if delta >= 0 else f"{text} ago (overdue)"


def timers(
    project: Annotated[Path, typer.Option("--project", "-p", help="The project folder.",
                                          show_default="current folder")] = Path("."),
    agent: Annotated[str | None, typer.Option(help="Only this agent's timers.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also timers that fired for the "
                                           "last time or were cancelled.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list instead of a table.")
                       ] = False,
) -> None:
    """Timers: schedules, agents' wake-ups and sleeping tasks, with when each is due."""
    from wakeful.cli.common import fail, open_project, out, run_async, with_store

    loaded = open_project(project)
    if agent is not None and agent not in loaded.agents:
        from wakeful.errors import UnknownAgentError

        raise fail(str(UnknownAgentError(agent, list(loaded.agents))))

    async def read(store: Store) -> list[Timer]:
        return await store.timers().listing(agent=agent, include_ended=show_all)

    found = run_async(lambda: with_store(loaded, read))
    if as_json:
        out.print_json(json.dumps([t.to_dict() for t in found]))
        return
    if not found:
        out.print("No timers." if show_all else "No active timers (--all shows ended ones).")
        return
    now = time.time()
    table = Table(title=f"Timers ({len(found)})", title_justify="left")
    for column in ("timer", "agent", "when", "next due", "does", "misfire", "fired", "state"):
        table.add_column(column, overflow="fold" if column == "does" else "ellipsis")
    for t in found:
        due = "-" if t.next_due is None else f"{stamp(t.next_due)} ({until(t.next_due, now)})"
        misfire = t.misfire + (f", max {t.max_runs}" if t.max_runs else "")
        table.add_row(t.id, Text(t.agent or "-"), Text(t.describe_when()), due,
                      Text(t.describe_action()),
                      misfire if t.action == "start_task" else "-", str(t.fired), t.state)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(timers)
