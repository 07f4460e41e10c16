"""What every command shares: the app, the consoles, the project option, one-line
errors, and opening a project or its store."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from wakeful.cli.faults import Commands, describe_os_error, session
from wakeful.core.loop import run
from wakeful.errors import ConfigError, WakefulError
from wakeful.project.loader import STORE_URL_ENV, Project, load_project
from wakeful.store import Store, open_store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

T = TypeVar("T")
app = typer.Typer(name="wakeful", help="Run teams of LLM agents, each in its own loop.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  cls=Commands)
out = Console()
err = Console(stderr=True)

ProjectOption = Annotated[Path, typer.Option("--project", "-p", help="The project folder.",
                                             show_default="current folder")]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's async part; what a person can fix ends it with one line."""
    try:
        return run(main())
    except WakefulError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # the file system (full, read-only) under the project
        raise fail(describe_os_error(exc)) from None


def shown_url(url: str) -> str:
    """A store URL fit to print: any password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user, has_password, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{host}"


def take_store_option(argv: list[str]) -> list[str]:
    """``--store URL`` may follow any command: take it out of ``argv`` and set
    ``WAKEFUL_STORE_URL``, which every command that opens a project reads."""
    kept: list[str] = []
    items = iter(argv)
    for item in items:
        if item == "--store":
            value = next(items, None)
            if value is None:
                raise fail("--store needs a URL (sqlite:///PATH or postgresql://USER@HOST:PORT/DB)")
            os.environ[STORE_URL_ENV] = value
        elif item.startswith("--store="):
            os.environ[STORE_URL_ENV] = item.removeprefix("--store=")
        else:
            kept.append(item)
    return kept


def open_project(path: Path) -> Project:
    try:
        project = load_project(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    for problem in project.errors:
        err.print(f"[yellow]warning:[/] {escape(str(problem))} (this agent is skipped)",
                  highlight=False, soft_wrap=True)
    return project


def store_where(project: Project) -> str:
    """The project's store as error lines name it (no password)."""
    return shown_url(project.store_url())


async def with_store(project: Project, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``action`` on the project's store, opened for it and closed after; a store
    that cannot take its writes ends it with one clear error (see cli.faults)."""
    store = open_store(project.store_url(), project.config.store.synchronous)
    return await session(store, store_where(project), lambda: action(store))


