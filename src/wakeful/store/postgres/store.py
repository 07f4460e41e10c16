"""PostgreSQL store: one database that any number of workers, on any machines, share.

PostgreSQL decides who runs what (leases, claims and fences are conditional writes in
one transaction, on the database's clock); notifications are only doorbells (see
:mod:`wakeful.store.bells`). Writes go through one group-commit writer connection
(:mod:`~wakeful.store.postgres.writer`); reads through a small pool beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from wakeful.core.records import AgentRecord, Event, Fence, RunRecord, TaskRecord
from wakeful.core.states import AgentState
from wakeful.errors import StoreError
from wakeful.store.base import Store
from wakeful.store.postgres.connect import (
    Target,
    connect,
    create_pool,
    is_broken_connection,
    is_connection_lost,
    parse_url,
)
from wakeful.store.postgres.dump import PgDump
from wakeful.store.postgres.leases import PgLeases
from wakeful.store.postgres.listener import Listener, channel
from wakeful.store.postgres.merged import AgentWrite
from wakeful.store.postgres.migrate import migrate
from wakeful.store.postgres.rows import (
    EVENT_SELECT,
    event_from_row,
    task_insert,
)
from wakeful.store.postgres.schema import HORIZON, NOW
from wakeful.store.postgres.task_reads import PgTaskReads
from wakeful.store.postgres.task_writes import PgTaskWrites, require_fence
from wakeful.store.postgres.writer import Merge, PgOp, Writer

if TYPE_CHECKING:
    from wakeful.store.locks import LockStore
    from wakeful.store.mail import MailStore
    from wakeful.store.timers import TimerStore

T = TypeVar("T")
READ_POOL_SIZE = 4


class PostgresStore(PgTaskWrites, PgTaskReads, PgLeases, PgDump, Store):
    def __init__(self, url: str, synchronous: str = "normal") -> None:
        self.target: Target = parse_url(url)
        self.path = self.target.where
        self._synchronous = synchronous
        self._writer = Writer(self.target, channel)
        self._pool: asyncpg.Pool | None = None
        self._listener = Listener(self.target, self.bells)
        self._mail: MailStore | None = None
        self._locks: LockStore | None = None
        self._timers: TimerStore | None = None

    @property
    def notifies(self) -> bool:
        return True

    @property
    def outage(self) -> str | None:
        return self._writer.outage

    @property
    def batches(self) -> int:
        return self._writer.batches

    @property
    def writes(self) -> int:
        return self._writer.writes

    # lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        conn = await connect(self.target)
        try:
            await migrate(conn, self.target)
        except BaseException:
            await conn.close()
            raise
        await self._writer.start(conn)
        self._pool = await create_pool(self.target, READ_POOL_SIZE)
        await self._listener.start()

    async def close(self, outage_grace_s: float = 10.0) -> None:
        await self._writer.stop(outage_grace_s)
        await self._listener.stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # writing and reading ------------------------------------------------
    async def write(self, op: PgOp, ring: Iterable[str] = (), merge: Merge | None = None
                    ) -> Any:
        """Run ``op`` in the next committed batch (its own savepoint if another write
        in the batch fails) and return its result; ring ``ring`` on commit. With
        ``merge``, it may be applied together with others of its kind instead."""
        return await self.write_soon(op, ring, merge)

    def write_soon(self, op: PgOp, ring: Iterable[str] = (), merge: Merge | None = None
                   ) -> asyncio.Future[Any]:
        """:meth:`write`, queued now: the future resolves once the batch committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writer.enqueue(op, future, ring, merge)
        return future

    def write_nowait(self, op: PgOp, ring: Iterable[str] = ()) -> None:
        self._writer.enqueue(op, None, ring)

    async def flush(self) -> None:
        await self._writer.flush()

    async def read(self, query: Callable[[Any], Awaitable[T]], *, idempotent: bool = False
                   ) -> T:
        """Run ``query`` on a pooled connection. A connection found lost or broken is
        thrown away (the pool opens another); the query is tried again on a fresh one
        if it never reached the server (a broken connection), or if it is
        ``idempotent`` (a plain read), and otherwise fails."""
        for attempt in (1, 2):
            pool = self._pool
            if pool is None:
                raise StoreError(f"{self.target.where}: the store is not open")
            conn = await pool.acquire()
            try:
                return await query(conn)
            except Exception as exc:
                if not is_connection_lost(exc):
                    raise
                conn.terminate()
                if attempt == 2 or not (idempotent or is_broken_connection(exc)):
                    raise
            finally:
                # A connection that cannot be reset is closed by the pool; the query's
                # outcome (its result, or its error) stands either way.
                with contextlib.suppress(Exception):
                    await pool.release(conn)
        raise AssertionError("unreachable")

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            found: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return found

        return await self.read(rows, idempotent=True)

    async def now(self) -> float:
        """The database's clock."""
        rows = await self.fetch(f"SELECT {NOW}")
        return float(rows[0][0])

    # the other families, in the same database ---------------------------
    def mail(self) -> MailStore:
        from wakeful.store.postgres.mail import PgMailStore

        if self._mail is None:
            self._mail = PgMailStore(self)
        return self._mail

    def locks(self) -> LockStore:
        from wakeful.store.postgres.locks import PgLockStore

        if self._locks is None:
            self._locks = PgLockStore(self)
        return self._locks

    def timers(self) -> TimerStore:
        from wakeful.store.postgres.timers import PgTimerStore

        if self._timers is None:
            self._timers = PgTimerStore(self)
        return self._timers

    # runs --------------------------------------------------------------
    async def begin_run(self, run: RunRecord, first_tasks: Sequence[TaskRecord] = ()) -> bool:
        async def op(conn: asyncpg.Connection) -> bool:
            await conn.execute("LOCK TABLE runs IN SHARE ROW EXCLUSIVE MODE")  # one first
            first = not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM runs)")
            await conn.execute("INSERT INTO runs (id, started_at, pid) VALUES ($1, $2, $3)",
                               run.id, run.started_at, run.pid)
            if first:
                for record in first_tasks:
                    sql, values = task_insert(record)
                    await conn.execute(sql, *values)
            return bool(first)

        result: bool = await self.write(op, ring=("tasks",) if first_tasks else ())
        return result

    async def end_run(self, run_id: str, ended_at: float) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("UPDATE runs SET ended_at = $1 WHERE id = $2", ended_at, run_id)

        await self.write(op)

    async def list_runs(self) -> list[RunRecord]:
        rows = await self.fetch("SELECT id, started_at, pid, ended_at FROM runs "
                                "ORDER BY started_at")
        return [RunRecord(id=r[0], started_at=r[1], pid=r[2], ended_at=r[3]) for r in rows]

    async def latest_run(self) -> RunRecord | None:
        rows = await self.fetch("SELECT id, started_at, pid, ended_at FROM runs "
                                "ORDER BY started_at DESC LIMIT 1")
        return (RunRecord(id=rows[0][0], started_at=rows[0][1], pid=rows[0][2],
                          ended_at=rows[0][3]) if rows else None)

    # agents ------------------------------------------------------------
    async def save_agent(self, record: AgentRecord, fence: Fence | None = None) -> None:
        values = [record.name, record.state.value, record.reason, record.restarts,
                  record.updated_at]

        async def op(conn: asyncpg.Connection) -> None:
            if fence is not None:
                await require_fence(conn, fence, f"agent {record.name!r} state "
                                    f"{record.state.value!r}")
            await conn.execute(
                "INSERT INTO agents (name, state, reason, restarts, updated_at) VALUES "
                "($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET state = "
                "excluded.state, reason = excluded.reason, restarts = excluded.restarts, "
                "updated_at = excluded.updated_at", *values)

        await self.write(op, ring=("agents",), merge=AgentWrite(
            (record.name, record.state.value, record.reason, record.restarts,
             record.updated_at), fence))

    async def load_agents(self) -> dict[str, AgentRecord]:
        rows = await self.fetch("SELECT name, state, reason, restarts, updated_at FROM agents")
        return {r[0]: AgentRecord(r[0], AgentState(r[1]), r[2], r[3], r[4]) for r in rows}

    # tasks -------------------------------------------------------------
    # events ------------------------------------------------------------
    def append_event(self, event: Event) -> None:
        self._writer.event(event)

    async def query_events(
        self,
        *,
        agent: str | None = None,
        task_id: str | None = None,
        types: Iterable[str] | None = None,
        type_prefix: str | None = None,
        correlation_id: str | None = None,
        after_id: int = 0,
        limit: int = 1000,
        newest: bool = False,
    ) -> list[Event]:
        # Commit-ordered: rows of transactions still running (or older than one that
        # is) are left for a later call, so following ``after_id`` never skips a row.
        params: list[Any] = [after_id]
        clauses = ["id > $1", f"id < {HORIZON}"]
        if type_prefix is not None:
            params.extend([type_prefix, type_prefix + "\U0010ffff"])
            clauses.append(f"type >= ${len(params) - 1} AND type < ${len(params)}")
        for column, value in (("correlation_id", correlation_id), ("agent", agent),
                              ("task_id", task_id)):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        if types is not None:
            params.append(list(types))
            clauses.append(f"type = ANY(${len(params)}::text[])")
        order = "DESC" if newest else "ASC"
        sql = (f"{EVENT_SELECT} WHERE {' AND '.join(clauses)} ORDER BY id {order} "
               f"LIMIT {int(limit)}")
        events = [event_from_row(r) for r in await self.fetch(sql, *params)]
        return events[::-1] if newest else events
