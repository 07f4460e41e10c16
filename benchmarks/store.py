"""Benchmark: the SQLite store and the PostgreSQL store side by side, in one run.

What is measured
----------------
Each figure is measured on both backends in the same run, one after the other, with
the same code: a real SQLite file (WAL, ``synchronous=NORMAL``, group commit) and a
PostgreSQL database made fresh for this run (``CREATE DATABASE wakeful_bench_<random>``
on the server at ``--server``, dropped at the end; each measurement gets a schema of its
own in it). PostgreSQL's ``synchronous_commit`` is read from the server and printed:
the targets are meant with it ``on`` (every commit waits for its fsync).

* **Agent steps committed per second** (``*_steps_per_s``): a real
  :class:`~wakeful.Runtime` with 1,000 agents on a scripted model at 0 ms latency; one
  task per agent, and each task takes 10 model steps (9 steps calling the built-in
  ``word_count`` tool, then a final reply), so 10,000 steps in all, each written
  durably (``save_step``: the task row and its new messages; the tool results too)
  with its events. From the first ``create_task`` to ``wait_idle``; every task is then
  checked ``done`` in the store, with 10 model calls each.
* **Durable mails per second** (``*_mails_per_s``): 500 sender -> reader pairs through
  the :class:`~wakeful.mailbox.Mailbox` on the store's mail family (as the durable part
  of ``benchmarks/mailbox.py``): a ``send`` returns once committed, the reader wakes,
  and its ``ack`` returns once committed. 20,000 mails; every delivery is checked
  ``acked`` in the store afterwards.
* **Timer firings per second** (``*_timer_fires_per_s``): a runtime with 100 agents;
  5,000 one-shot schedule timers (``start_task`` at one instant) are added through the
  scheduler, all due at the same moment. From that due time until the scheduler has
  fired all of them (each firing claims its timer with a compare-and-set and creates
  its task and its ``timer.fired`` event in the same transaction); then every timer is
  checked fired exactly once and every started task ``done``.

Why
---
PostgreSQL is what lets many workers share one store, but every commit there is a
network round trip and, with ``synchronous_commit`` on, an fsync (3-7 ms on this disk).
Group commit is what keeps it fast: these figures show whether it does, next to
SQLite on the same machine. Targets (issue 12): ``postgres_steps_per_s`` >= 3,000 and
``postgres_mails_per_s`` >= 5,000 with ``synchronous_commit`` on. The store's writer
counters (``batches``, ``writes``) are shown so that writes per commit can be read.

The machine has 2 cores shared with other work; figures move by 10-20% between runs.
Run it with ``python benchmarks/store.py`` (PostgreSQL must be up at
127.0.0.1:5432, trust auth, user postgres; ``--server URL`` for another). The last line
of its output is one JSON object with the headline figures (units in the key names).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from wakeful import ScriptedModel, build_runtime
from wakeful.core.loop import CHOICES, LOOP_ENV, loop_name, run
from wakeful.core.records import Event
from wakeful.core.states import TaskState
from wakeful.core.timespecs import TimerSpec
from wakeful.mailbox import Mailbox
from wakeful.observe.events import EventLog
from wakeful.project.definitions import MailboxConfig
from wakeful.runtime.runtime import Runtime
from wakeful.store import Store, open_store
from wakeful.store.sqlite import SQLiteStore

RERUN = "python benchmarks/store.py"
SERVER = "postgresql://postgres@127.0.0.1:5432"
AGENTS, STEPS = 1_000, 10
PAIRS, MAILS = 500, 20_000
TIMER_AGENTS, TIMERS = 100, 5_000
ADD_MARGIN_S = 5.0  # adding the timers must end before they are due
IDLE_TIMEOUT_S = 120.0
BACKENDS = ("sqlite", "postgres")


class BenchmarkError(RuntimeError):
    """A run did not end as expected."""


# where the stores live ----------------------------------------------------------------
class Places:
    """Fresh stores: a SQLite file in a temporary folder, or a fresh schema in this
    run's PostgreSQL database."""

    def __init__(self, server: str, tmp: Path) -> None:
        self.server = server
        self.database = f"wakeful_bench_{uuid.uuid4().hex[:10]}"
        self.url = f"{server}/{self.database}"
        self.tmp = tmp
        self.synchronous_commit = "?"
        self._made = 0

    async def create(self) -> None:
        conn = await self._admin()
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
            self.synchronous_commit = await conn.fetchval("SHOW synchronous_commit")
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await conn.close()

    async def _admin(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(f"{self.server}/postgres", timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise BenchmarkError(f"PostgreSQL at {self.server} cannot be reached ({exc}); "
                                 "start it or pass --server") from exc

    async def new_store(self, backend: str) -> Store:
        self._made += 1
        if backend == "sqlite":
            return open_store(self.tmp / f"store-{self._made}.db")
        schema = f"b{self._made}"
        conn = await asyncpg.connect(self.url, timeout=10)
        try:
            await conn.execute(f"CREATE SCHEMA {schema}")
        finally:
            await conn.close()
        return open_store(f"{self.url}?search_path={schema}")

    async def count(self, store: Store, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` read straight from the store's database (the check)."""
        if isinstance(store, SQLiteStore):
            with sqlite3.connect(store.path) as conn:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
        rows = await store.fetch(sql)  # type: ignore[attr-defined]
        return [tuple(r) for r in rows]


def counters(store: Store) -> tuple[int, int]:
    return int(getattr(store, "batches", 0)), int(getattr(store, "writes", 0))


@asynccontextmanager
async def running(store: Store, agents: int, steps: list[dict[str, Any]], prefix: str,
                  concurrent: int = 4) -> AsyncIterator[Runtime]:
    model = ScriptedModel.from_steps(steps, latency_ms=0)
    runtime = build_runtime(
        agents=[{"name": f"{prefix}{i:04d}", "model": "bench", "tools": ["word_count"],
                 "answer_mail": False, "max_concurrent_tasks": concurrent}
                for i in range(agents)],
        models={"bench": model}, store=store)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def check_tasks(store: Store, expected: int, steps: int) -> None:
    tasks = await store.list_tasks(limit=expected + 10)
    bad = [t for t in tasks if t.state is not TaskState.DONE or t.result != "done"]
    if len(tasks) != expected or bad:
        first = f"{bad[0].id}: {bad[0].state.value} {bad[0].error}" if bad else "-"
        raise BenchmarkError(f"{len(tasks)} tasks of {expected}, {len(bad)} not done "
                             f"(first: {first})")
    short = [t.id for t in tasks if t.step != steps]
    if short:
        raise BenchmarkError(f"{len(short)} tasks did not take {steps} steps")


# agent steps ------------------------------------------------------------------------
async def steps_per_s(places: Places, backend: str) -> dict[str, Any]:
    script = [{"say": "", "tool_calls": [{"tool": "word_count",
                                           "args": {"text": "word " * (k + 1)}}]}
              for k in range(STEPS - 1)] + [{"say": "done"}]
    store = await places.new_store(backend)
    async with running(store, AGENTS, script, "a") as runtime:
        batches, writes = counters(store)
        started = time.perf_counter()
        await asyncio.gather(*(runtime.create_task(f"a{i:04d}", "count some words")
                               for i in range(AGENTS)))
        await runtime.wait_idle(IDLE_TIMEOUT_S)
        wall = time.perf_counter() - started
        batches, writes = counters(store)[0] - batches, counters(store)[1] - writes
        await check_tasks(store, AGENTS, STEPS)
    return {"steps_per_s": AGENTS * STEPS / wall, "wall_s": wall, "batches": batches,
            "writes": writes}


# mail ---------------------------------------------------------------------------------
async def mails_per_s(places: Places, backend: str) -> dict[str, Any]:
    names = frozenset({*(f"s{i}" for i in range(PAIRS)), *(f"r{i}" for i in range(PAIRS))})
    per_pair = MAILS // PAIRS
    store = await places.new_store(backend)
    await store.open()
    mailbox = Mailbox(store.mail(), MailboxConfig(), events=EventLog(store),
                      agents=lambda: names)
    await mailbox.open()
    try:
        async def sender(i: int) -> None:
            for k in range(per_pair):
                await mailbox.send(f"s{i}", f"r{i}", "work", f"item {k}")

        async def reader(i: int) -> None:
            for _ in range(per_pair):
                await mailbox.ack(await mailbox.receive(f"r{i}"))

        started = time.perf_counter()
        await asyncio.gather(*(sender(i) for i in range(PAIRS)),
                             *(reader(i) for i in range(PAIRS)))
        wall = time.perf_counter() - started
        statuses = dict(await places.count(
            store, "SELECT status, COUNT(*) FROM mail_deliveries GROUP BY status"))
    finally:
        await mailbox.close()
        await store.close()
    if statuses != {"acked": PAIRS * per_pair}:
        raise BenchmarkError(f"{backend}: deliveries not all acknowledged: {statuses}")
    return {"mails_per_s": PAIRS * per_pair / wall, "wall_s": wall}


# timers -------------------------------------------------------------------------------
async def timer_fires_per_s(places: Places, backend: str) -> dict[str, Any]:
    store = await places.new_store(backend)
    async with running(store, TIMER_AGENTS, [{"say": "done"}], "t",
                       TIMERS // TIMER_AGENTS) as runtime:
        scheduler = runtime.scheduler
        fired: list[float] = []
        all_fired = asyncio.Event()

        def count(event: Event) -> None:
            if event.type == "timer.fired":
                fired.append(time.time())
                if len(fired) == TIMERS:
                    all_fired.set()

        runtime.events.add_listener(count)
        due = time.time() + ADD_MARGIN_S  # all due at this one instant
        await asyncio.gather(*(scheduler.add(
            TimerSpec.at(due), "start_task", agent=f"t{i % TIMER_AGENTS:04d}",
            instruction=f"timer {i}") for i in range(TIMERS)))
        if time.time() >= due:
            raise BenchmarkError(f"{backend}: adding {TIMERS} timers took past their due "
                                 "time")
        await asyncio.wait_for(all_fired.wait(), IDLE_TIMEOUT_S)
        fired_s = fired[-1] - due
        await runtime.wait_idle(IDLE_TIMEOUT_S)
        await check_tasks(store, TIMERS, 1)
        rows = dict(await places.count(store, "SELECT fired, COUNT(*) FROM timers "
                                              "WHERE state = 'done' GROUP BY fired"))
    if rows != {1: TIMERS}:
        raise BenchmarkError(f"{backend}: timers not each fired once: {rows}")
    return {"timer_fires_per_s": TIMERS / fired_s, "fire_all_s": fired_s}


# the run ------------------------------------------------------------------------------
MEASURES: dict[str, Callable[[Places, str], Awaitable[dict[str, Any]]]] = {
    "steps": steps_per_s, "mails": mails_per_s, "timers": timer_fires_per_s}


async def measure(server: str) -> tuple[dict[str, dict[str, dict[str, Any]]], str]:
    results: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in MEASURES}
    with tempfile.TemporaryDirectory(prefix="wakeful-store-bench-") as tmp:
        places = Places(server, Path(tmp))
        await places.create()
        try:
            for name, run in MEASURES.items():
                for backend in BACKENDS:  # side by side: same machine load
                    gc.collect()
                    results[name][backend] = found = await run(places, backend)
                    print(f"{name} on {backend}: {found}", file=sys.stderr, flush=True)
        finally:
            await places.drop()
    return results, places.synchronous_commit


def show(results: dict[str, dict[str, dict[str, Any]]], synchronous_commit: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Wakeful stores side by side (PostgreSQL synchronous_commit: "
                        f"{synchronous_commit})", title_justify="left")
    for column, justify in (("what", "left"), ("SQLite", "right"), ("PostgreSQL", "right"),
                            ("PG / SQLite", "right"), ("PG target", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    rows = (("steps", "steps_per_s", f"agent steps/s ({AGENTS:,} agents x {STEPS} steps)",
             ">= 3,000"),
            ("mails", "mails_per_s", f"durable mails/s ({PAIRS} pairs, {MAILS:,} mails)",
             ">= 5,000"),
            ("timers", "timer_fires_per_s",
             f"timer firings/s ({TIMERS:,} due at once)", ""))
    for name, key, label, target in rows:
        lite, pg = results[name]["sqlite"][key], results[name]["postgres"][key]
        table.add_row(label, f"{lite:,.0f}", f"{pg:,.0f}", f"{pg / lite:.2f}", target)
    for name in ("steps",):
        lite, pg = results[name]["sqlite"], results[name]["postgres"]
        table.add_row(f"  {name}: commits (writes per commit)",
                      f"{lite['batches']:,} ({lite['writes'] / max(1, lite['batches']):.0f})",
                      f"{pg['batches']:,} ({pg['writes'] / max(1, pg['batches']):.0f})", "", "")
    console = Console(width=120)
    console.print(table)
    console.print("Every run was checked in its store: all tasks done with their steps, all "
                  "deliveries acked, every timer fired exactly once.", soft_wrap=True)
    console.print(f"Rerun: {RERUN}", soft_wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--loop", choices=CHOICES, default=None,
                        help="the event loop (default: as the wakeful commands choose, "
                             f"{LOOP_ENV} or uvloop where installed)")
    parser.add_argument("--server", default=SERVER,
                        help=f"PostgreSQL server URL without a database (default {SERVER})")
    args = parser.parse_args()
    try:
        results, synchronous_commit = run(measure(args.server), args.loop)
    except BenchmarkError as exc:
        sys.exit(f"benchmark failed: {exc}")
    show(results, synchronous_commit)
    summary: dict[str, Any] = {"postgres_synchronous_commit": synchronous_commit,
                               "event_loop": loop_name(args.loop)}
    for name, key in (("steps", "steps_per_s"), ("mails", "mails_per_s"),
                      ("timers", "timer_fires_per_s")):
        for backend in BACKENDS:
            summary[f"{backend}_{key}"] = round(results[name][backend][key])
    for backend in BACKENDS:
        r = results["steps"][backend]
        summary[f"{backend}_steps_commits"] = r["batches"]
        summary[f"{backend}_steps_writes"] = r["writes"]
        summary[f"{backend}_steps_wall_s"] = round(r["wall_s"], 3)
        summary[f"{backend}_timers_fire_all_s"] = round(results["timers"][backend]
                                                        ["fire_all_s"], 3)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
