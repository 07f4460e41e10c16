"""SQLite store: one file, WAL mode, group commit.

Why not one transaction per write: at hundreds of agents, a commit per state change is
the bottleneck. Writes are queued and a single writer drains the queue, applying
everything that accumulated as one transaction in one hop to its thread (each write in
its own savepoint, so one bad write fails alone). Under no load a write commits at
once; under load, batches grow and the cost per write falls. A write's awaiter resumes
only after its batch has committed, so an awaited write survives a killed process
(WAL with ``synchronous=NORMAL``; ``full`` also survives power loss).

The connection lives on a dedicated thread (sqlite3 objects must stay on one thread);
reads use a second connection on another thread, which WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wakeful.core.encoding import to_json
from wakeful.core.records import AgentRecord, Event, Fence, RunRecord, TaskRecord
from wakeful.core.states import AgentState
from wakeful.errors import ConflictError, StoreError
from wakeful.store.base import Store, step_hole
from wakeful.store.sqlite.dump import SQLiteDump
from wakeful.store.sqlite.leases import (
    FENCE_SQL,
    SQLiteLeases,
    check_fenced,
    fence_params,
    require_fence,
)
from wakeful.store.sqlite.migrations import MIGRATIONS
from wakeful.store.sqlite.rows import (
    _EVENT_SELECT,
    _TASK_SELECT,
    EVENT_INSERT,
    event_from_row,
    event_row,
    task_from_row,
    task_insert,
)
from wakeful.store.sqlite.task_reads import SQLiteTaskReads
from wakeful.store.sqlite.writer import SQLiteWriting, WriteOp
from wakeful.store.task_sql import task_update_sql

if TYPE_CHECKING:
    from wakeful.store.locks import LockStore
    from wakeful.store.mail import MailStore
    from wakeful.store.timers import TimerStore

T = TypeVar("T")

def apply_mail_changes(conn: sqlite3.Connection, changes: Sequence[Any]) -> None:
    """Mailbox changes (acks, a delegation) committed with a task's own write."""
    from wakeful.store.sqlite.mail import apply_changes

    apply_changes(conn, changes)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; return the resulting version. Each version is read
    and applied inside one write transaction, so processes opening a fresh store at the
    same moment apply every migration exactly once between them."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(f"store schema version {version} is newer than this "
                                 f"Wakeful understands ({len(MIGRATIONS)}); upgrade wakeful")
            if version == len(MIGRATIONS):
                conn.execute("COMMIT")
                return version
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class SQLiteStore(SQLiteWriting, SQLiteTaskReads, SQLiteLeases, SQLiteDump, Store):
    def __init__(self, path: Path | str, synchronous: str = "normal") -> None:
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="wakeful-sqlite-write")
        self._reader_thread = ThreadPoolExecutor(1, thread_name_prefix="wakeful-sqlite-read")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._pending: list[tuple[WriteOp, asyncio.Future[Any] | None]] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        self.writes = 0
        self.outage: str | None = None  # why writes are being held, while they are
        self._outage_wait = 0.0
        self._mail: MailStore | None = None
        self._locks: LockStore | None = None
        self._timers: TimerStore | None = None

    # lifecycle ---------------------------------------------------------
    def _connect(self, write: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        if write:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            migrate(conn)
        else:
            conn.execute("PRAGMA query_only = ON")
        return conn

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._wconn = await loop.run_in_executor(self._writer_thread, self._connect, True)
            self._rconn = await loop.run_in_executor(self._reader_thread, self._connect, False)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the SQLite store: {exc}") from None
        self._writer = asyncio.create_task(self._write_loop(), name="wakeful-store-writer")

    async def close(self, outage_grace_s: float = 10.0) -> None:
        if self._writer is not None:
            try:
                await asyncio.wait_for(self.flush(), None if self.outage is None
                                       else outage_grace_s)
            except TimeoutError:  # the disk did not recover: what is held is lost
                for _, future in self._pending:
                    if future is not None and not future.done():
                        future.set_exception(StoreError(
                            f"{self.path}: the store could not be written ({self.outage})"))
                self._pending.clear()
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        loop = asyncio.get_running_loop()
        if self._wconn is not None:
            await loop.run_in_executor(self._writer_thread, self._wconn.close)
            self._wconn = None
        if self._rconn is not None:
            await loop.run_in_executor(self._reader_thread, self._rconn.close)
            self._rconn = None
        self._writer_thread.shutdown(wait=True)
        self._reader_thread.shutdown(wait=True)

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._rconn
        if conn is None:
            raise StoreError(f"{self.path}: the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_thread, query, conn)

    # the other families, in the same database ---------------------------
    def mail(self) -> MailStore:
        from wakeful.store.sqlite.mail import SQLiteMailStore

        if self._mail is None:
            self._mail = SQLiteMailStore(self)
        return self._mail

    def locks(self) -> LockStore:
        from wakeful.store.sqlite.locks import SQLiteLockStore

        if self._locks is None:
            self._locks = SQLiteLockStore(self)
        return self._locks

    def timers(self) -> TimerStore:
        from wakeful.store.sqlite.timers import SQLiteTimerStore

        if self._timers is None:
            self._timers = SQLiteTimerStore(self)
        return self._timers

    # runs --------------------------------------------------------------
    async def begin_run(self, run: RunRecord, first_tasks: Sequence[TaskRecord] = ()) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            first = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
            conn.execute("INSERT INTO runs (id, started_at, pid) VALUES (?, ?, ?)",
                          (run.id, run.started_at, run.pid))
            if first:
                for record in first_tasks:
                    conn.execute(*task_insert(record))
            return bool(first)

        result: bool = await self.write(op)
        return result

    async def end_run(self, run_id: str, ended_at: float) -> None:
        await self.write(lambda c: c.execute("UPDATE runs SET ended_at = ? WHERE id = ?",
                                             (ended_at, run_id)))

    async def list_runs(self) -> list[RunRecord]:
        rows = await self.read(lambda c: c.execute(
            "SELECT id, started_at, pid, ended_at FROM runs ORDER BY started_at").fetchall())
        return [RunRecord(id=r[0], started_at=r[1], pid=r[2], ended_at=r[3]) for r in rows]

    async def latest_run(self) -> RunRecord | None:
        row = await self.read(lambda c: c.execute(
            "SELECT id, started_at, pid, ended_at FROM runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone())
        return RunRecord(id=row[0], started_at=row[1], pid=row[2], ended_at=row[3]) if row else None

    # agents ------------------------------------------------------------
    async def save_agent(self, record: AgentRecord, fence: Fence | None = None) -> None:
        values = [record.name, record.state.value, record.reason, record.restarts,
                  record.updated_at]
        sql = ("INSERT INTO agents (name, state, reason, restarts, updated_at) "
               "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET state = "
               "excluded.state, reason = excluded.reason, restarts = excluded.restarts, "
               "updated_at = excluded.updated_at")

        def op(conn: sqlite3.Connection) -> None:
            if fence is not None:
                require_fence(conn, fence, f"agent {record.name!r} state "
                              f"{record.state.value!r}")
            conn.execute(sql, values)

        await self.write(op)

    async def load_agents(self) -> dict[str, AgentRecord]:
        rows = await self.read(lambda c: c.execute(
            "SELECT name, state, reason, restarts, updated_at FROM agents").fetchall())
        return {r[0]: AgentRecord(r[0], AgentState(r[1]), r[2], r[3], r[4]) for r in rows}

    # tasks -------------------------------------------------------------
    async def create_task(self, record: TaskRecord, mail: Sequence[Any] = ()) -> None:
        sql, values = task_insert(record)

        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(sql, values)
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"task {record.id}: {exc}") from None
            if mail:
                apply_mail_changes(conn, mail)

        await self.write(op)

    @staticmethod
    def _update_sql(task_id: str, fields: dict[str, Any], fence: Fence | None = None
                    ) -> tuple[str, list[Any]]:
        fields.setdefault("updated_at", time.time())
        sql = task_update_sql(tuple(fields), FENCE_SQL if fence is not None else None, False)
        params = [*fields.values(), task_id]
        if fence is not None:
            params.extend(fence_params(fence))
        return sql, params

    async def update_task(self, task_id: str, fence: Fence | None = None, *,
                          expect_state: str | Sequence[str] | None = None, **fields: Any
                          ) -> bool:
        sql, params = self._update_sql(task_id, fields, fence)
        if expect_state is not None:
            wanted = [expect_state] if isinstance(expect_state, str) else list(expect_state)
            sql += f" AND state IN ({', '.join('?' for _ in wanted)})"
            params.extend(wanted)
        what = f"task {task_id} update"
        changed: bool = await self.write(
            lambda c: check_fenced(c.execute(sql, params), fence, what))
        return changed

    async def claim_task(self, task_id: str, fence: Fence,
                         opening: Sequence[dict[str, Any]] = (),
                         started_at: float | None = None) -> tuple[TaskRecord, bool] | None:
        now = time.time()
        sql = ("UPDATE tasks SET state = 'running', owner = ?, updated_at = ?, "
               "started_at = COALESCE(started_at, ?) WHERE id = ? AND state = 'queued' "
               "AND " + FENCE_SQL)
        params = [fence.owner, now, started_at or now, task_id, *fence_params(fence)]
        rows = [(task_id, i, to_json(m)) for i, m in enumerate(opening)]

        def op(conn: sqlite3.Connection) -> tuple[TaskRecord, bool] | None:
            before = conn.execute("SELECT started_at FROM tasks WHERE id = ?",
                                  (task_id,)).fetchone()
            if before is None or not check_fenced(conn.execute(sql, params), fence,
                                                   f"claim of task {task_id}"):
                return None
            resumed = before[0] is not None
            if not resumed and rows:
                conn.executemany("INSERT OR IGNORE INTO task_messages (task_id, seq, data) "
                                 "VALUES (?, ?, ?)", rows)
            row = conn.execute(_TASK_SELECT + " WHERE id = ?", (task_id,)).fetchone()
            return task_from_row(row), resumed

        claimed: tuple[TaskRecord, bool] | None = await self.write(op)
        return claimed

    def queue_step(
        self, task_id: str, first_seq: int, messages: Sequence[dict[str, Any]], *,
        fence: Fence | None = None, mail: Sequence[Any] = (), **fields: Any
    ) -> asyncio.Future[None]:
        sql, params = self._update_sql(task_id, fields, fence)
        rows = [(task_id, first_seq + i, to_json(m)) for i, m in enumerate(messages)]
        after = first_seq if rows and first_seq else None  # this message must be stored

        def op(conn: sqlite3.Connection) -> None:
            check_fenced(conn.execute(sql, params), fence, f"step of task {task_id}")
            if after is not None and conn.execute(
                    "SELECT 1 FROM task_messages WHERE task_id = ? AND seq = ?",
                    (task_id, after - 1)).fetchone() is None:
                raise step_hole(task_id, after)
            conn.executemany("INSERT OR REPLACE INTO task_messages (task_id, seq, data) "
                             "VALUES (?, ?, ?)", rows)
            if mail:
                apply_mail_changes(conn, mail)

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(op, future)
        return future

    # events ------------------------------------------------------------
    def append_event(self, event: Event) -> None:
        values = event_row(event)

        def op(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(EVENT_INSERT, values)
            event.id = cursor.lastrowid

        self.write_nowait(op)

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
        clauses: list[str] = ["id > ?"]
        params: list[Any] = [after_id]
        if type_prefix is not None:
            clauses.append("type >= ? AND type < ?")
            params.extend([type_prefix, type_prefix + "\U0010ffff"])
        if correlation_id is not None:
            clauses.append("correlation_id = ?")
            params.append(correlation_id)
        if agent is not None:
            clauses.append("agent = ?")
            params.append(agent)
        if task_id is not None:
            clauses.append("task_id = ?")
            params.append(task_id)
        if types is not None:
            wanted = list(types)
            clauses.append(f"type IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        order = "DESC" if newest else "ASC"
        sql = (f"{_EVENT_SELECT} WHERE {' AND '.join(clauses)} ORDER BY id {order} "
               f"LIMIT {int(limit)}")
        rows = await self.read(lambda c: c.execute(sql, params).fetchall())
        events = [event_from_row(r) for r in rows]
        return events[::-1] if newest else events
