"""Group commit for PostgreSQL: one transaction for whatever writes have queued up.

Why: with ``synchronous_commit`` on, every commit waits for an fsync (3-7 ms on this
kind of disk), so one commit per write caps a worker at a few hundred writes a second
whatever the load. Writes are queued; one writer connection applies everything that
accumulated in one transaction and commits once. A write's awaiter resumes only after
its batch committed.

Each batch is first tried whole (no savepoints: a round trip each). If one write in it
fails, the batch is rolled back and applied again with a savepoint around each write, so
that the bad write fails alone and the rest commit. Events, the most numerous writes,
go in as one multi-row INSERT per batch. Writes that say how they :class:`Merge` (agent
steps: thousands per batch under load) are applied together, a group per statement,
instead of a few round trips each, which is what held a worker to about 900 steps a
second; their order against other writes is kept (a group is applied before the next
write that does not merge, and two writes on one subject never share a group: the
second goes to the next layer of groups).

Doorbells: each write names the topics its commit should ring; the batch sends one
NOTIFY per topic just before its COMMIT (delivered by PostgreSQL only if it commits),
coalesced, because a NOTIFY per write made every commit slower.

A lost connection before the COMMIT was sent loses nothing: the batch is kept and
applied again on a new connection (with backoff, logged once). A connection lost during
the COMMIT leaves the outcome unknown; those writes fail with a StoreError that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import structlog

from wakeful.core.backoff import next_wait
from wakeful.core.records import Event
from wakeful.errors import OutcomeUnknownError, StoreError
from wakeful.store.postgres.connect import Target, connect, is_connection_lost
from wakeful.store.postgres.inserts import insert_events

log = structlog.get_logger("wakeful.store")
PgOp = Callable[[asyncpg.Connection], Awaitable[Any]]


class Merge(Protocol):
    """How a write can be applied together with others of its kind: writes with equal
    ``key`` go to one ``apply_many`` call (which returns one result per write; if it
    raises, the batch is applied again one write at a time, each by its own ``op``)."""

    @property
    def key(self) -> Hashable: ...

    @property
    def subject(self) -> str: ...

    async def apply_many(self, conn: asyncpg.Connection, group: Sequence[Any]
                         ) -> list[Any]: ...


@dataclass(slots=True)
class _Write:
    op: PgOp
    future: asyncio.Future[Any] | None
    ring: tuple[str, ...]
    merge: Merge | None = None


class _Unknown(Exception):
    """The connection went away during COMMIT: the batch may or may not be durable."""


class Writer:
    def __init__(self, target: Target, bells_channel: Callable[[str], str]) -> None:
        self.target = target
        self._channel = bells_channel
        self._conn: asyncpg.Connection | None = None
        self._pending: list[_Write] = []
        self._events: list[Event] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.writes = 0
        self.outage: str | None = None

    async def start(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._task = asyncio.create_task(self._loop(), name="wakeful-pg-writer")

    async def stop(self, grace_s: float = 10.0) -> None:
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.flush(), grace_s)
        except TimeoutError:
            self._fail_all(StoreError(f"{self.target.where}: could not be written "
                                      f"({self.outage})"))
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)
            self._conn = None

    def _fail_all(self, exc: Exception) -> None:
        for write in self._pending:
            if write.future is not None and not write.future.done():
                write.future.set_exception(exc)
        self._pending.clear()
        self._events.clear()

    # queueing -----------------------------------------------------------
    def enqueue(self, op: PgOp, future: asyncio.Future[Any] | None,
                ring: Iterable[str] = (), merge: Merge | None = None) -> None:
        if self._task is None:
            raise StoreError(f"{self.target.where}: the store is not open")
        self._pending.append(_Write(op, future, tuple(ring), merge))
        self._kick()

    def event(self, event: Event) -> None:
        if self._task is None:
            raise StoreError(f"{self.target.where}: the store is not open")
        self._events.append(event)
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wakeup.set()

    async def flush(self) -> None:
        if self._task is not None and (self._pending or self._events
                                       or not self._idle.is_set()):
            await self._idle.wait()

    # applying -----------------------------------------------------------
    async def _loop(self) -> None:
        wait = 0.0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending or self._events:
                batch, self._pending = self._pending, []
                events, self._events = self._events, []
                try:
                    results = await self._apply(batch, events)
                except asyncio.CancelledError:  # stopped mid-batch: never leave awaiters hanging
                    for write in batch:
                        if write.future is not None and not write.future.done():
                            write.future.set_exception(OutcomeUnknownError(
                                f"{self.target.where}: the store was closed while this write "
                                "was being applied; it may or may not have been stored"))
                    raise
                except _Unknown as exc:
                    results = [OutcomeUnknownError(
                        f"{self.target.where}: the connection was lost while committing; "
                        f"the write may or may not have been stored ({exc})")] * len(batch)
                    await self._reconnect()
                except Exception as exc:
                    if not is_connection_lost(exc):  # neither the batch nor one write:
                        # fail these writes, never the writer (its death would leave
                        # every later write of this process waiting for good)
                        log.error("store: a batch failed; its writes fail with it",
                                  where=self.target.where, error=repr(exc),
                                  writes=len(batch), events=len(events))
                        results = [StoreError(f"{self.target.where}: the write failed "
                                              f"({exc!r})")] * len(batch)
                        await self._reconnect()
                    else:
                        self._pending[:0], self._events[:0] = batch, events
                        if self.outage is None:
                            log.error("store: cannot write; holding the writes and "
                                      "retrying", where=self.target.where, error=str(exc))
                        self.outage = str(exc) or exc.__class__.__name__
                        wait = next_wait(wait)
                        await asyncio.sleep(wait)
                        await self._reconnect()
                        continue
                if self.outage is not None:
                    log.warning("store: writes go through again", where=self.target.where,
                                after=self.outage)
                    self.outage, wait = None, 0.0
                self.batches += 1
                self.writes += len(batch) + len(events)
                for write, result in zip(batch, results, strict=True):
                    if write.future is None or write.future.done():
                        continue
                    if isinstance(result, Exception):
                        write.future.set_exception(result)
                    else:
                        write.future.set_result(result)
            self._idle.set()

    async def _reconnect(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
        try:
            self._conn = await connect(self.target, timeout=5.0)
        except StoreError as exc:
            log.debug("store: reconnect failed", error=str(exc))

    async def _apply(self, batch: list[_Write], events: list[Event]) -> list[Any]:
        if self._conn is None:
            try:
                self._conn = await connect(self.target, timeout=5.0)
            except StoreError as exc:  # still cut off: an outage, the batch is kept
                raise ConnectionError(str(exc)) from exc
        try:
            return await self._run(batch, events, isolate=False)
        except Exception as exc:
            if is_connection_lost(exc) or isinstance(exc, _Unknown):
                raise
        return await self._run(batch, events, isolate=True)

    async def _run(self, batch: list[_Write], events: list[Event], isolate: bool
                   ) -> list[Any]:
        conn = self._conn
        assert conn is not None
        results: list[Any] = []
        topics: set[str] = set()
        transaction = conn.transaction()
        await transaction.start()
        try:
            if isolate:
                for write in batch:
                    try:
                        async with conn.transaction():
                            results.append(await write.op(conn))
                        topics.update(write.ring)
                    except Exception as exc:
                        if is_connection_lost(exc):
                            raise
                        results.append(exc)
            else:
                results = await self._run_merged(conn, batch)
                for write in batch:
                    topics.update(write.ring)
            if events:
                await insert_events(conn, events)
            if topics:
                await conn.execute("SELECT pg_notify(t, '') FROM unnest($1::text[]) t",
                                   [self._channel(t) for t in sorted(topics)])
        except BaseException:
            with contextlib.suppress(Exception):
                await transaction.rollback()
            raise
        try:
            await transaction.commit()
        except Exception as exc:
            if is_connection_lost(exc):
                raise _Unknown(str(exc)) from exc
            raise
        return results

    @staticmethod
    async def _run_merged(conn: asyncpg.Connection, batch: list[_Write]) -> list[Any]:
        """Apply ``batch`` in order, writes that merge in groups (see :class:`Merge`).

        Between two writes that do not merge, the n-th write of each subject goes to
        layer n, and the layers are applied in turn, a group per key in each: a task
        whose tool result and next step share a batch costs one more statement per
        batch, not two more per task."""
        results: list[Any] = [None] * len(batch)
        segment: list[int] = []

        async def apply_segment() -> None:
            layers: list[dict[Hashable, list[int]]] = []
            depth: dict[str, int] = {}
            for index in segment:
                merge = batch[index].merge
                assert merge is not None
                layer = depth.get(merge.subject, 0)
                depth[merge.subject] = layer + 1
                if layer == len(layers):
                    layers.append({})
                layers[layer].setdefault(merge.key, []).append(index)
            segment.clear()
            for groups in layers:
                for indices in groups.values():
                    if len(indices) == 1:
                        results[indices[0]] = await batch[indices[0]].op(conn)
                        continue
                    merges = [batch[i].merge for i in indices]
                    assert merges[0] is not None
                    for i, result in zip(indices, await merges[0].apply_many(conn, merges),
                                         strict=True):
                        results[i] = result

        for index, write in enumerate(batch):
            if write.merge is None:
                await apply_segment()
                results[index] = await write.op(conn)
            else:
                segment.append(index)
        await apply_segment()
        return results
