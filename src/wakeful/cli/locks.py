"""``wakeful locks``: who holds and who waits for shared resources, from the store.

It reads the store, so it works whether or not a runtime is running and shows the
locks of every runtime sharing the store, including those of a runtime that died
(their leases run out on the store's clock). Short auto-pause waits show too, since a
waiting task keeps its place in line in the store; short operations that hold a
resource without waiting live only in their runtime's memory (``list_locks``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wakeful.resources.views import describe_lock, describe_waiter
from wakeful.store import Store


def seconds(value: float) -> str:
    value = abs(value)
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} m"


def locks(
    project: Annotated[Path, typer.Option("--project", "-p", help="The project folder.",
                                          show_default="current folder")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of "
                                                         "tables.")] = False,
) -> None:
    """Locks on shared resources: holders, waiters, lease ages and fencing tokens."""
    from wakeful.cli.common import open_project, out, run_async, with_store

    loaded = open_project(project)

    async def read(store: Store) -> dict[str, Any]:
        lock_store = store.locks()
        now, held, waiting = await lock_store.snapshot()
        return {"locks": [describe_lock(lock, now) for lock in held],
                "waiting": [describe_waiter(w, now) for w in waiting],
                "last_token": await lock_store.last_token(),
                "recent_deadlocks": await lock_store.recent_deadlocks(5)}

    found = run_async(lambda: with_store(loaded, read))
    if as_json:
        out.print_json(json.dumps(found))
        return
    if not found["locks"]:
        out.print("No locks held.")
    else:
        table = Table(title=f"Locks ({len(found['locks'])})", title_justify="left")
        for column in ("resource", "mode", "token", "agent", "task", "pid", "held for",
                       "lease"):
            table.add_column(column, no_wrap=column in ("resource", "task"))
        for lock in found["locks"]:
            left = lock["lease_left_s"]
            lease = (f"{seconds(left)} left" if left > 0
                     else f"[red]expired {seconds(left)} ago[/]")
            table.add_row(Text(lock["resource"]), lock["mode"], str(lock["token"]),
                          Text(lock["agent"]), Text(lock["task_id"]), str(lock["pid"]),
                          seconds(lock["held_s"]), lease)
        out.print(table)
    if found["waiting"]:
        table = Table(title=f"Waiting ({len(found['waiting'])}, first in line first)",
                      title_justify="left")
        for column in ("resource", "mode", "kind", "agent", "task", "pid", "waiting for"):
            table.add_column(column, no_wrap=column in ("resource", "task"))
        for w in found["waiting"]:
            table.add_row(Text(w["resource"]), w["mode"], w["kind"], Text(w["agent"]),
                          Text(w["task_id"]), str(w["pid"]), seconds(w["waiting_s"]))
        out.print(table)
    else:
        out.print("Nobody is waiting.")
    out.print(f"Last fencing token granted: {found['last_token']}.", highlight=False)
    if found["recent_deadlocks"]:
        out.print("Recent deadlocks (each broken by ending the youngest task's wait):")
    for deadlock in found["recent_deadlocks"]:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(deadlock["ts"]))
        out.print(f"  {stamp} [red]{escape(deadlock['message'])}[/]", highlight=False,
                  soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("locks")(locks)
