"""Shared fixtures: real runtimes on real SQLite files, driven by scripted models."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from mail_fixtures import AGENTS, OpenMailbox
from pg_support import own_pg_server, pg_database, pg_url  # noqa: F401 (fixtures)
from polling import until
from wakeful.core.records import Event
from wakeful.mailbox import Mailbox
from wakeful.models.base import Model
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel
from wakeful.observe.events import EventLog
from wakeful.project.definitions import AgentDefinition, MailboxConfig, RestartPolicy
from wakeful.runtime.runtime import Runtime
from wakeful.schedule.clock import Clock
from wakeful.store import Store, open_store
from wakeful.store.sqlite import SQLiteStore
from wakeful.toolkit.registry import Tool
from wakeful.tools.builtin import default_tools

# pytest-xdist's workers export COLUMNS=80 and LINES=24; rich would fix the CLI's
# consoles at that size when they are made, and the tests that ask for a wide terminal
# (COLUMNS in the CLI runner's environment) would still get 80 columns.
for _fixed in ("COLUMNS", "LINES"):
    os.environ.pop(_fixed, None)


class RuntimeFactory(Protocol):
    async def __call__(
        self,
        agents: Iterable[AgentDefinition],
        models: Mapping[str, Model] | None = None,
        *,
        tools: Iterable[Tool] = (),
        db_path: Path | None = None,
        start: bool = True,
        poll_interval_s: float = 0.05,
        clock: Clock | None = None,
    ) -> Runtime: ...


AgentFactory = Callable[..., AgentDefinition]
ScriptFactory = Callable[..., ScriptedModel]
EventQuery = Callable[..., Awaitable[list[Event]]]
WaitUntil = Callable[..., Awaitable[None]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "wakeful.db"


# The runtime tests that run on both backends (each test twice: SQLite, PostgreSQL),
# unless marked ``sqlite_only`` (a test that reads or breaks the SQLite file itself).
BOTH_BACKENDS = frozenset({
    "test_runtime", "test_states", "test_tools", "test_cancel_cascade", "test_responder",
    "test_mailbox_tools", "test_schedule_timers", "test_schedule_waits", "test_approvals",
    "test_control", "test_agent_admin", "test_ask_person", "test_new_messages",
    "test_schedule_progress", "test_observe", "test_observe_sinks", "test_unstorable_text",
    "test_people", "test_tool_capabilities", "test_a2a_server", "test_a2a_remote",
    "test_mcp", "test_orphans", "test_wait_task"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if ("make_runtime" in metafunc.fixturenames
            and metafunc.module.__name__ in BOTH_BACKENDS
            and metafunc.definition.get_closest_marker("sqlite_only") is None):
        metafunc.parametrize("store_backend", ["sqlite", "postgresql"])


@pytest.fixture
def store_backend() -> str:
    """The backend of ``make_runtime``'s runtimes (``WAKEFUL_TEST_STORE``, default
    sqlite; both, for the modules in BOTH_BACKENDS)."""
    return os.environ.get("WAKEFUL_TEST_STORE", "sqlite")


@pytest.fixture
async def make_runtime(tmp_path: Path, db_path: Path, request: pytest.FixtureRequest,
                       store_backend: str) -> AsyncIterator[RuntimeFactory]:
    """Build (and by default start) runtimes; every one is stopped at teardown.

    On PostgreSQL (``store_backend``) each ``db_path`` is a fresh schema, so a test that
    reopens its store reopens that schema."""
    made: list[Runtime] = []
    on_postgres = store_backend == "postgresql"
    # Asked for now, so that the schema outlives the runtimes (torn down after them).
    first_schema = request.getfixturevalue("pg_url") if on_postgres else ""
    schemas: dict[Path, str] = {}

    def store_for(path: Path) -> Store:
        if not on_postgres:
            return SQLiteStore(path)
        if path not in schemas:
            schemas[path] = first_schema if not schemas else _another_schema(request)
        return open_store(schemas[path])

    async def factory(
        agents: Iterable[AgentDefinition],
        models: Mapping[str, Model] | None = None,
        *,
        tools: Iterable[Tool] = (),
        db_path: Path | None = db_path,
        start: bool = True,
        poll_interval_s: float = 0.05,
        clock: Clock | None = None,
    ) -> Runtime:
        registry = ModelRegistry(tmp_path / "scripts")
        for spec, model in (models or {}).items():
            registry.register(spec, model)
        tool_registry = default_tools()
        for extra in tools:
            tool_registry.register(extra)
        runtime = Runtime(
            store=store_for(db_path or tmp_path / "wakeful.db"),
            models=registry,
            tools=tool_registry,
            agents=list(agents),
            poll_interval_s=poll_interval_s,
            clock=clock,
        )
        made.append(runtime)
        if start:
            await runtime.start()
        return runtime

    yield factory
    for runtime in reversed(made):
        await stop_or_explain(runtime)


async def stop_or_explain(runtime: Runtime, within_s: float = 120.0) -> None:
    """Stop ``runtime``; if that hangs, fail naming every asyncio task still pending
    and where it waits, the stopping one first (a hung teardown would otherwise hold the
    whole suite, and say nothing of where ``stop`` itself was stuck)."""
    import asyncio
    import io

    stopping = asyncio.create_task(runtime.stop(), name="runtime.stop()")
    done, _ = await asyncio.wait({stopping}, timeout=within_s)
    if done:
        stopping.result()
        return
    out = io.StringIO()
    others = asyncio.all_tasks() - {stopping, asyncio.current_task()}
    for task in [stopping, *others]:
        out.write(f"{task.get_name()}:\n{_awaiting(task)}")
    stopping.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
    raise AssertionError(f"runtime.stop() hung for {within_s} s; pending tasks:\n"
                         f"{out.getvalue()}")


def _awaiting(task: Any) -> str:
    """Where ``task`` waits: its whole chain of awaits (``Task.print_stack`` shows only
    the outermost frame of a suspended coroutine)."""
    lines = []
    step = task.get_coro()
    while step is not None and len(lines) < 30:
        frame = getattr(step, "cr_frame", None) or getattr(step, "ag_frame", None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} "
                         f"in {frame.f_code.co_name}\n")
        step = getattr(step, "cr_await", None) or getattr(step, "ag_await", None)
    if step is not None:
        lines.append(f"  awaiting {step!r}\n")
    return "".join(lines)


def _another_schema(request: pytest.FixtureRequest) -> str:
    """A second fresh schema in the session's PostgreSQL database (dropped with it)."""
    import uuid

    from pg_support import _execute, _run

    database = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _run(_execute(database, f"CREATE SCHEMA {schema}"))
    return f"{database}?search_path={schema}"


@pytest.fixture
def agent_def() -> AgentFactory:
    """``agent_def("a", model="m", tools=[...], policy="on-failure", ...)``.

    Restart backoff defaults to 10 ms so retry tests stay fast.
    """

    def build(
        name: str,
        *,
        model: str = "m",
        tools: Iterable[str] = (),
        policy: str = "on-failure",
        max_restarts: int | None = 2,
        backoff_initial_s: float = 0.01,
        **fields: Any,
    ) -> AgentDefinition:
        restart = RestartPolicy(policy=policy, max_restarts=max_restarts,  # type: ignore[arg-type]
                                backoff_initial_s=backoff_initial_s)
        return AgentDefinition(name=name, model=model, tools=list(tools), restart=restart,
                               **fields)

    return build


@pytest.fixture
def script() -> ScriptFactory:
    """``script([{"say": ...}, ...], latency_ms=...)``: a one-script ScriptedModel."""

    def build(steps: list[dict[str, Any]], latency_ms: float = 0) -> ScriptedModel:
        return ScriptedModel.from_steps(steps, latency_ms=latency_ms)

    return build


@pytest.fixture
def events() -> EventQuery:
    """Flush the store's queued events, then query them."""

    async def query(runtime: Runtime, **filters: Any) -> list[Event]:
        await runtime.store.flush()
        return await runtime.store.query_events(**filters)

    return query


@pytest.fixture
def wait_until() -> WaitUntil:
    """Poll an (async or sync) predicate until it holds; fail after ``within`` seconds."""

    async def wait(predicate: Callable[[], Any], within: float = 5.0,
                   what: str = "condition") -> None:
        await until(predicate, within, what)

    return wait


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL of each backend: a SQLite file, or a fresh PostgreSQL schema (tests
    that open several stores on it are several processes sharing one store)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wakeful.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def open_mailbox(backend_url: str) -> AsyncIterator[OpenMailbox]:
    """Open mailboxes on one store (several = several processes), on each backend;
    closes them all."""
    opened: list[tuple[Mailbox, Store]] = []

    async def make(live: bool = True, poll_interval_s: float = 0.05, **config: Any) -> Mailbox:
        store = open_store(backend_url)
        await store.open()
        mailbox = Mailbox(store.mail(), MailboxConfig(**config),
                          events=EventLog(store), agents=lambda: AGENTS, live=live,
                          poll_interval_s=poll_interval_s)
        await mailbox.open()
        opened.append((mailbox, store))
        return mailbox

    yield make
    for mailbox, store in reversed(opened):
        await mailbox.close()
        await store.close()


# slow tests: opt-in locally, always in CI -----------------------------------------
RUN_SLOW_ENV = "WAKEFUL_RUN_SLOW"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help=f"also run tests marked slow (or set {RUN_SLOW_ENV}=1; CI does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``slow`` tests (real processes, real clocks, a real model) are skipped unless asked
    for, so a local run stays quick; .ci/run asks for them."""
    import os

    if config.getoption("--run-slow") or os.environ.get(RUN_SLOW_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"slow: run with --run-slow or {RUN_SLOW_ENV}=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
