"""Commands about the store itself: ``migrate``, ``store copy``, ``workers``, and the
fresh start ``wakeful demo`` makes on either backend."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from wakeful.cli.common import (
    ProjectOption,
    app,
    fail,
    open_project,
    out,
    run_async,
    shown_url,
    with_store,
)
from wakeful.cli.console import cell
from wakeful.cli.faults import session
from wakeful.store import Store, open_store
from wakeful.store.copy import copy_store

store_app = typer.Typer(help="Move a project's state between stores.", no_args_is_help=True)


@app.command()
def migrate(project: ProjectOption = Path(".")) -> None:
    """Create the project's store, or bring its schema up to date (every command that
    opens the store does this too; run it first when many workers start at once)."""
    loaded = open_project(project)

    async def tables(store: Store) -> list[str]:
        return await store.table_names()

    names = run_async(lambda: with_store(loaded, tables))
    out.print(f"Store {escape(shown_url(loaded.store_url()))} is up to date "
              f"({len(names)} tables).", highlight=False, soft_wrap=True)


@store_app.command("copy")
def copy(source: Annotated[str, typer.Argument(help="The store to copy from (URL or path).")],
         target: Annotated[str, typer.Argument(help="An empty store to copy into.")]) -> None:
    """Copy every task, conversation, mail, channel, timer, lock and event from one store
    into an empty one: SQLite to PostgreSQL, or back. Stop the workers first."""
    async def main() -> dict[str, int]:
        origin, destination = open_store(source), open_store(target)

        async def into() -> dict[str, int]:
            return await session(destination, shown_url(target),
                                 lambda: copy_store(origin, destination))

        return await session(origin, shown_url(source), into)

    counts = run_async(main)
    total = sum(counts.values())
    details = ", ".join(f"{table} {n}" for table, n in sorted(counts.items()))
    out.print(f"Copied {total} rows from {escape(shown_url(source))} to "
              f"{escape(shown_url(target))}: {escape(details) or 'nothing to copy'}.",
              highlight=False, soft_wrap=True)


@app.command()
def workers(project: ProjectOption = Path(".")) -> None:
    """Live workers on the project's store: their agents and how fresh their leases are."""
    loaded = open_project(project)

    async def read(store: Store) -> tuple[list[tuple[str, int, str, float]],
                                          dict[str, tuple[str | None, int, float]]]:
        return await store.list_workers(), await store.agent_owners()

    seen, owners = run_async(lambda: with_store(loaded, read))
    now = time.time()
    table = Table(title=cell(f"Workers on {shown_url(loaded.store_url())}"),
                  title_justify="left")
    for column in ("worker", "pid", "host", "agents", "lease ends in"):
        table.add_column(column)
    live = [w for w in seen if w[3] > now]
    for worker, pid, host, expires in live:
        mine = sorted(a for a, (owner, _, until) in owners.items()
                      if owner == worker and until > now)
        table.add_row(cell(worker), str(pid), cell(host), cell(", ".join(mine) or "-"),
                      f"{expires - now:.1f} s")
    if not live:
        raise fail("no live workers (start one with `wakeful worker` or `wakeful run`)", 3)
    out.print(table)


async def empty_store(url: str) -> None:
    """A fresh start for ``wakeful demo`` on a server store: delete every row of the
    project's tables (on SQLite the demo deletes the file instead)."""
    store = open_store(url)
    await session(store, shown_url(url), store.clear)


def register(root: typer.Typer) -> None:
    root.add_typer(store_app, name="store")
