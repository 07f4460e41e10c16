"""Commands that run the team in the foreground: ``wakeful run``, ``serve``, ``worker``
and ``demo``, with the live view (or one line per event), the optional web UI and the
optional JSON log and trace sinks; a clean stop on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from wakeful.cli.common import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ProjectOption,
    err,
    fail,
    open_project,
    out,
    run_async,
    shown_url,
    store_where,
    with_store,
)
from wakeful.cli.console import LiveStatus, print_events
from wakeful.cli.faults import StoreWriteError, diagnosed, watched
from wakeful.cli.faults import close as close_store
from wakeful.cli.projects import copy_example
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState
from wakeful.errors import StoreError, WakefulError
from wakeful.project.loader import PROJECT_FILE, Project
from wakeful.runtime.runtime import Runtime
from wakeful.server.auth import Token

if TYPE_CHECKING:
    from wakeful.server.serve import WebServer


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
        await _serve(runtime, until_idle, plain, ui, store_where(project))
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


async def _start(runtime: Runtime, where: str) -> None:
    """Start the runtime, or fail with one line if its store cannot take writes: the
    store would hold the first writes until it can (right once running, where nothing
    must be lost), and the command would hang deaf to Ctrl-C and SIGTERM. What the
    start had done is closed without waiting for writes that cannot land."""
    try:
        await watched(runtime.store, where, runtime.start())
    except StoreError as exc:  # it could not even open the store
        raise diagnosed(exc, where) from None
    except StoreWriteError:
        await close_store(runtime.store)  # fails the held writes: stop cannot wait on them
        with contextlib.suppress(Exception):
            await runtime.stop()
        raise


async def _serve(runtime: Runtime, until_idle: bool, plain: bool,
                 ui: UIOptions | None = None, where: str = "the store") -> None:
    # Signal handlers first: Ctrl-C or SIGTERM at any moment from here on stops cleanly
    # (tasks back to the queue, agents handed over to other workers).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await _start(runtime, where)
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
