"""The ``wakeful`` command line.

Every command that can fail because of what a person typed or wrote fails with one
clear line on stderr and a non-zero exit; tracebacks are reserved for bugs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from wakeful.cli.common import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ProjectOption,
    app,
    err,
    fail,
    open_project,
    out,
    run_async,
    shown_url,
    take_store_option,
    with_store,
)
from wakeful.cli.console import LiveStatus, agents_table, cell, print_events, tasks_table
from wakeful.core.records import TaskRecord
from wakeful.core.states import AgentState, TaskState
from wakeful.errors import WakefulError
from wakeful.observe.describe import clip
from wakeful.project.loader import PROJECT_FILE, STORE_URL_ENV, Project
from wakeful.runtime.ownership import process_alive
from wakeful.runtime.runtime import AgentStatus, Runtime
from wakeful.runtime.tasks import instruction_problem
from wakeful.server.auth import Token
from wakeful.store import Store

if TYPE_CHECKING:
    from wakeful.server.serve import WebServer

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


@app.command()
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


PlainOption = Annotated[bool | None, typer.Option(
    "--plain/--live", help="One line per event instead of the live view.",
    show_default="plain when not a terminal")]
LogJsonOption = Annotated[Path | None, typer.Option(
    help="Also write every event as a JSON log line to this file.")]


@contextlib.contextmanager
def observed(runtime: Runtime, log_json: Path | None) -> Iterator[None]:
    """Attach the optional sinks: JSON logs to a file, OpenTelemetry spans over OTLP."""
    with contextlib.ExitStack() as stack:
        if log_json is not None:
            from wakeful.observe.logs import install_logs

            stream = stack.enter_context(log_json.open("a", encoding="utf-8"))
            install_logs(runtime.events, stream)
        from wakeful.observe.tracing import tracing_requested

        if tracing_requested():
            try:
                from wakeful.observe.otel import install_tracing
            except ImportError:
                raise WakefulError("tracing is requested (OTEL_EXPORTER_OTLP_ENDPOINT is set) "
                                   "but OpenTelemetry is not installed: "
                                   "pip install 'wakeful[otel]'") from None
            provider, builder = install_tracing(runtime.events)
            stack.callback(provider.shutdown)
            stack.callback(builder.close)
        yield


@dataclass(frozen=True)
class UIOptions:
    """``--ui``: serve the API and web UI beside the runtime."""

    host: str
    port: int
    token: Token  # --token, or the project's (made on first start)


HostOption = Annotated[str, typer.Option(help="Address the web UI listens on.")]
PortOption = Annotated[int, typer.Option(help="Port of the web UI (0: any free port).")]
TokenOption = Annotated[str | None, typer.Option(
    help="API token to require (default: the project's .wakeful/token, made on first "
         "start).", show_default=False)]


async def serve_runtime(project: Project, until_idle: bool, plain: bool,
                        log_json: Path | None = None, ui: UIOptions | None = None) -> Runtime:
    from wakeful.server.interop import install_interop, with_remote_agents  # issue 13

    runtime = Runtime.from_project(with_remote_agents(project))
    install_interop(runtime, project)
    if project.config.agents.reload_files:
        from wakeful.runtime.reload import AgentFileWatcher

        def report(line: str) -> None:
            err.print(f"[yellow]agent files:[/] {escape(line)}", highlight=False,
                      soft_wrap=True)

        runtime.add_service(AgentFileWatcher(project.root / project.config.agents_dir,
                                             project.config.agents.reload_interval_s,
                                             report))
    with observed(runtime, log_json):
        await _serve(runtime, until_idle, plain, ui)
    return runtime


def _ui_options(project: Project, host: str, port: int, token: str | None) -> UIOptions:
    """Refuse a bad host or token before anything starts."""
    from wakeful.server.auth import load_or_create_token

    try:
        return UIOptions(host, port, load_or_create_token(project.root, host, token))
    except WakefulError as exc:
        raise fail(str(exc)) from None


async def _start_web(runtime: Runtime, ui: UIOptions) -> WebServer:
    from wakeful.server.serve import WebServer

    token = ui.token
    web = WebServer(runtime, token.value, host=ui.host, port=ui.port)
    await web.start()
    if token.created:
        out.print(f"Web UI: [bold]{escape(web.login_url)}[/]\n  (a new API token, printed "
                  f"this once; it is kept in {escape(str(token.path))})", highlight=False,
                  soft_wrap=True)
    else:
        where = f"the token is in {token.path}" if token.path else "log in with your --token"
        out.print(f"Web UI: [bold]{escape(web.url)}[/] ({escape(where)})", highlight=False,
                  soft_wrap=True)
    return web


async def _serve(runtime: Runtime, until_idle: bool, plain: bool,
                 ui: UIOptions | None = None) -> None:
    # Signal handlers first: Ctrl-C or SIGTERM at any moment from here on stops cleanly
    # (tasks back to the queue, agents handed over to other workers).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await runtime.start()
    web: WebServer | None = None
    try:
        if ui is not None:
            web = await _start_web(runtime, ui)
    except BaseException:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runtime.stop()
        raise
    view = print_events(runtime, out) if plain else LiveStatus(runtime, out).run()
    view_task = asyncio.create_task(view, name="cli:view")
    stopper = asyncio.create_task(stop.wait(), name="cli:signal")
    waiters: set[asyncio.Task[Any]] = {stopper}
    if until_idle:
        waiters.add(asyncio.create_task(runtime.wait_idle(), name="cli:idle"))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*waiters, view_task):
            task.cancel()
        await asyncio.gather(*waiters, view_task, return_exceptions=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if web is not None:
            await web.stop()
        await runtime.stop()


async def summarize(project: Project) -> list[TaskRecord]:
    return await with_store(project, lambda s: s.list_tasks())


@app.command()
def run(
    project: ProjectOption = Path("."),
    until_idle: Annotated[bool, typer.Option(
        "--until-idle", help="Exit once no agent has work left.")] = False,
    plain: PlainOption = None,
    log_json: LogJsonOption = None,
    ui: Annotated[bool, typer.Option("--ui", help="Also serve the web UI and API.")] = False,
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    token: TokenOption = None,
) -> None:
    """Start the runtime for a project: agents run until you press Ctrl-C.

    Set OTEL_EXPORTER_OTLP_ENDPOINT to export traces (pip install 'wakeful[otel]').
    """
    loaded = open_project(project)
    options = _ui_options(loaded, host, port, token) if ui else None
    use_plain = plain if plain is not None else not out.is_terminal
    out.print(f"Running [bold]{escape(loaded.config.name)}[/] with {len(loaded.agents)} "
              f"agents (store: {escape(shown_url(loaded.store_url()))}). "
              "Ctrl-C stops.", highlight=False)
    run_async(lambda: serve_runtime(loaded, until_idle, use_plain, log_json, options))
    tasks = run_async(lambda: summarize(loaded))
    print_summary(tasks)


@app.command()
def serve(
    project: ProjectOption = Path("."),
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    token: TokenOption = None,
    plain: PlainOption = None,
    log_json: LogJsonOption = None,
) -> None:
    """Start the runtime with the web UI and API (what `wakeful run --ui` does).

    The API needs a token: made on the first start, printed once with the URL, and kept
    in .wakeful/token in the project folder. A non-loopback --host needs an existing
    token (--token, or that file).
    """
    run(project=project, until_idle=False, plain=plain, log_json=log_json, ui=True,
        host=host, port=port, token=token)


@app.command()
def worker(
    project: ProjectOption = Path("."),
    plain: PlainOption = None,
    log_json: LogJsonOption = None,
) -> None:
    """Start a worker: it runs its share of the project's agents beside any other
    workers on the same store, until Ctrl-C or SIGTERM (which hands its agents over).

    Which worker runs which agent is decided in the store, by lease: a worker that
    stops renewing (killed, stalled) loses its agents to the others after
    worker_lease_s (wakeful.yaml, default 10 s); one killed on the same machine loses
    them at once. `wakeful run` and `wakeful serve` join the same way.
    """
    run(project=project, until_idle=False, plain=plain, log_json=log_json, ui=False,
        host=DEFAULT_HOST, port=DEFAULT_PORT, token=None)


def print_summary(tasks: list[TaskRecord]) -> None:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state.value] = counts.get(task.state.value, 0) + 1
    line = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no tasks"
    out.print(f"Tasks: {line}.", highlight=False)
    for task in tasks:
        if task.state is TaskState.FAILED:
            out.print(f"  [red]failed[/] {task.id} ({task.agent}, {task.error_kind}): "
                      f"{escape(task.error or '')}", highlight=False)


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Where to put the demo project.")] = Path(
        "wakeful-demo"),
    ui: Annotated[bool, typer.Option(
        "--ui", help="Serve the web UI and keep running until Ctrl-C.")] = False,
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    local: Annotated[bool, typer.Option("--local", help="On a real model, offline "
                                        "(SmolLM2-135M via xllamacpp), with the web UI.")] = False,
) -> None:
    """Run the example team offline (scripted models, no API key) from a fresh start."""
    if local:  # the local model's demo lives beside `wakeful model serve`
        from wakeful.cli.model import demo_local
        return demo_local(folder, host, port)
    if not (folder / PROJECT_FILE).exists():
        copy_example(folder)
    url = open_project(folder).store_url()
    if "://" in url:  # a server store: empty its tables instead of deleting a file
        from wakeful.cli.store import empty_store
        run_async(lambda: empty_store(url))
    for suffix in ("", "-wal", "-shm"):
        (folder / f"wakeful.db{suffix}").unlink(missing_ok=True)
    run(project=folder, until_idle=not ui, plain=None, log_json=None, ui=ui, host=host,
        port=port, token=None)


@app.command()
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


@app.command()
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


@app.command()
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


@app.command("task")
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


@app.command("start-task")
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
        await runtime.store.open()
        try:
            from wakeful.runtime.agent import new_task_record

            problem = instruction_problem(instruction)
            if problem is not None:
                raise WakefulError(problem)
            record = new_task_record(agent, instruction, created_by="cli")
            await runtime.store.create_task(record)
            runtime.events.emit("task.created", agent=agent, task_id=record.id, data={
                "instruction": instruction[:500], "created_by": "cli"})
            return record
        finally:
            await runtime.store.close()

    record = run_async(create)
    out.print(f"Queued task [bold]{record.id}[/] for {agent}.", highlight=False)


def _register_commands() -> None:
    """Commands defined beside their features (they import this module's helpers)."""
    from wakeful.cli.agent_admin import register as register_agent_admin
    from wakeful.cli.approvals import register as register_approvals
    from wakeful.cli.inspect import register as register_inspector
    from wakeful.cli.locks import register as register_resources
    from wakeful.cli.mail import channel_app, mail_app
    from wakeful.cli.mcp import register as register_mcp
    from wakeful.cli.model import register as register_models
    from wakeful.cli.store import register as register_store
    from wakeful.cli.timers import register as register_timers

    register_inspector(app)
    register_approvals(app)
    register_resources(app)
    register_timers(app)
    register_models(app)
    register_mcp(app)
    register_store(app)
    register_agent_admin(app)
    app.add_typer(mail_app, name="mail")
    app.add_typer(channel_app, name="channel")


_register_commands()


def main() -> None:
    """Console-script entry point."""
    try:
        try:
            sys.argv[1:] = take_store_option(sys.argv[1:])
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        app()
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            err.print("interrupted")
        sys.exit(130)
