"""The SQLite store's writer: group commit on one connection, on its own thread.

Writes queue up; one loop drains the queue and applies whatever has accumulated as one
transaction, each write in its own savepoint (one bad write fails alone). A failing
disk (full, read-only, I/O error: an outage) fails no write: the batch is kept whole
and applied again, with backoff, once the store takes writes. A write's awaiter resumes
only after its batch has committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from wakeful.core.backoff import next_wait
from wakeful.errors import OutcomeUnknownError, StoreError
from wakeful.store.sqlite.outage import Outage, is_outage

log = structlog.get_logger("wakeful.store")
WriteOp = Callable[[sqlite3.Connection], Any]


def _abandon(batch: list[tuple[WriteOp, asyncio.Future[Any] | None]],
             error: Exception) -> None:
    for _, future in batch:
        if future is not None and not future.done():
            future.set_exception(error)


class SQLiteWriting:
    """The group-commit half of :class:`~wakeful.store.sqlite.store.SQLiteStore` (its
    ``__init__`` sets these attributes up)."""

    path: Path
    outage: str | None
    batches: int
    writes: int
    _wconn: sqlite3.Connection | None
    _writer_thread: ThreadPoolExecutor
    _pending: list[tuple[WriteOp, asyncio.Future[Any] | None]]
    _wakeup: asyncio.Event
    _idle: asyncio.Event
    _writer: asyncio.Task[None] | None
    _outage_wait: float

    def _apply(self, batch: list[tuple[WriteOp, asyncio.Future[Any] | None]]) -> list[Any]:
        conn = self._wconn
        assert conn is not None
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op, _ in batch:
                conn.execute("SAVEPOINT op")
                try:
                    results.append(op(conn))
                    conn.execute("RELEASE op")
                except Exception as exc:  # one bad write fails alone...
                    if is_outage(exc):  # ...unless the disk fails them all
                        raise Outage(exc) from exc
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append(exc)
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if is_outage(exc):
                    raise Outage(exc) from exc
                raise
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await loop.run_in_executor(self._writer_thread, self._apply, batch)
                except asyncio.CancelledError:  # closed mid-batch: never leave awaiters hanging
                    _abandon(batch, OutcomeUnknownError(
                        f"{self.path}: the store was closed while this write was being "
                        "applied; it may or may not have been stored (all of it or none)"))
                    raise
                except Exception as exc:
                    if isinstance(exc, Outage) or is_outage(exc):
                        # kept whole, and applied again once the store takes writes
                        self._pending[:0] = batch
                        await self._wait_out(exc)
                        continue
                    results = [exc] * len(batch)
                if self.outage is not None:
                    log.warning("store: writes go through again", path=str(self.path),
                                after=self.outage)
                    self.outage, self._outage_wait = None, 0.0
                self.batches += 1
                self.writes += len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future is None or future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
            self._idle.set()

    async def _wait_out(self, exc: Exception) -> None:
        if self.outage is None:
            log.error("store: cannot write; holding the writes and retrying",
                      path=str(self.path), error=str(exc))
        self.outage = str(exc)
        self._outage_wait = next_wait(self._outage_wait)
        await asyncio.sleep(self._outage_wait)

    def _enqueue(self, op: WriteOp, future: asyncio.Future[Any] | None) -> None:
        if self._writer is None:
            raise StoreError(f"{self.path}: the store is not open")
        self._pending.append((op, future))
        self._idle.clear()
        self._wakeup.set()

    async def write(self, op: WriteOp) -> Any:
        """Run ``op`` in the next committed batch and return its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(op, future)
        return await future

    def write_nowait(self, op: WriteOp) -> None:
        self._enqueue(op, None)

    async def flush(self) -> None:
        if self._writer is not None and (self._pending or not self._idle.is_set()):
            await self._idle.wait()
