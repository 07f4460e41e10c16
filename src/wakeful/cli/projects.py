"""Project commands: ``wakeful init`` makes a project folder; ``wakeful agents`` and
``wakeful status`` say what it defines and how its agents are doing (read from the
store, so they work beside a running runtime or after one stopped)."""

from __future__ import annotations

import os
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from wakeful.cli.common import ProjectOption, fail, open_project, out, run_async, with_store
from wakeful.cli.console import agents_table, cell
from wakeful.core.states import AgentState, TaskState
from wakeful.core.team import AgentStatus
from wakeful.observe.describe import clip
from wakeful.project.loader import PROJECT_FILE, STORE_URL_ENV
from wakeful.runtime.ownership import process_alive
from wakeful.store import Store


def write_store_url(project_file: Path, url: str) -> None:
    """Point a project's wakeful.yaml at ``url`` (its ``store.url`` line)."""
    text = project_file.read_text(encoding="utf-8")
    project_file.write_text(text.replace("url: sqlite:///wakeful.db", f"url: {url}", 1),
                            encoding="utf-8")


def copy_example(target: Path) -> None:
    source = resources.files("wakeful") / "examples" / "team"
    with resources.as_file(source) as folder:
        shutil.copytree(folder, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.db*", "__pycache__"))


def init(
    folder: Annotated[Path, typer.Argument(help="Where to create the project.")] = Path(
        "wakeful-project"),
) -> None:
    """Create a project folder holding the example team."""
    if (folder / PROJECT_FILE).exists():
        raise fail(f"{folder / PROJECT_FILE} already exists; choose another folder")
    if folder.exists() and any(folder.iterdir()):
        raise fail(f"{folder} exists and is not empty; choose another folder")
    copy_example(folder)
    given = os.environ.get(STORE_URL_ENV)
    if given:  # `wakeful init DIR --store URL`: the project keeps that store
        write_store_url(folder / PROJECT_FILE, given)
    shown = escape(str(folder))
    out.print(f"Created [bold]{shown}[/] with the example team. "
              f"Run it: [bold]wakeful run -p {shown} --until-idle[/]")


def status(project: ProjectOption = Path(".")) -> None:
    """Whether the runtime is running, and each agent's state and task counts."""
    loaded = open_project(project)

    async def gather() -> tuple[Any, Any, Any, Any, Any]:
        async def read(store: Store) -> tuple[Any, Any, Any, Any, Any]:
            return (await store.latest_run(), await store.load_agents(),
                    await store.count_tasks(), await store.list_workers(),
                    await store.agent_owners())
        return await with_store(loaded, read)

    run_record, agents, counts, workers, owners = run_async(gather)
    if run_record is None:
        out.print("Never run. Start it with [bold]wakeful run[/].")
    elif run_record.ended_at is None and process_alive(run_record.pid):
        out.print(f"Running (pid {run_record.pid}, run {run_record.id}).", highlight=False)
    elif run_record.ended_at is None:
        out.print(f"Not running: the last run (pid {run_record.pid}) stopped without shutting "
                  "down; its tasks resume on the next [bold]wakeful run[/].", highlight=False)
    else:
        out.print(f"Not running (last run {run_record.id} ended cleanly).", highlight=False)
    statuses = []
    for name, definition in loaded.agents.items():
        record = agents.get(name)
        statuses.append(AgentStatus(
            name, record.state if record else AgentState.CREATED,
            record.reason if record else "", record.restarts if record else 0,
            counts.get((name, TaskState.RUNNING), 0) + counts.get((name, TaskState.WAITING), 0),
            counts.get((name, TaskState.QUEUED), 0), definition.max_concurrent_tasks))
    out.print(agents_table(statuses))
    _print_workers(workers, owners)
    totals: dict[str, int] = {}
    for (_, state), n in counts.items():
        totals[state.value] = totals.get(state.value, 0) + n
    out.print("Tasks: " + (", ".join(f"{n} {s}" for s, n in sorted(totals.items()))
                           or "none"), highlight=False)


def _print_workers(workers: list[tuple[str, int, str, float]],
                   owners: dict[str, tuple[str | None, int, float]]) -> None:
    """Live workers (lease not lapsed) and the agents each one owns."""
    now = time.time()
    live = [(w, pid, host) for w, pid, host, expires in workers if expires > now]
    if not live:
        return
    parts = []
    for worker, pid, host in live:
        mine = sorted(a for a, (owner, _, expires) in owners.items()
                      if owner == worker and expires > now)
        parts.append(f"{worker} (pid {pid} on {host}): {', '.join(mine) or 'no agents'}")
    out.print("Workers: " + "; ".join(parts), highlight=False, soft_wrap=True, markup=False)


def agents(project: ProjectOption = Path(".")) -> None:
    """The agents the project defines: role, model, tools and limits."""
    loaded = open_project(project)
    from rich.table import Table

    table = Table(title=cell(f"Agents of {loaded.config.name}"), title_justify="left")
    table.add_column("agent", no_wrap=True)
    for column in ("role", "model", "tools", "max tasks", "restart", "schedule"):
        table.add_column(column)
    for a in loaded.agents.values():
        schedule = "; ".join((s.every and f"every {s.every}") or (s.cron and f"cron {s.cron}")
                             or f"at {s.at}" for s in a.schedule)
        table.add_row(cell(a.name), cell(clip(a.role, 30)),
                      cell(a.model or loaded.config.default_model),
                      cell(", ".join(a.tools) or "-"), str(a.max_concurrent_tasks),
                      cell(a.restart.policy), cell(schedule or "-"))
    out.print(table)
    if loaded.errors:
        raise typer.Exit(1)
