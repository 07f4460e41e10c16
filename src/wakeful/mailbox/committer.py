"""Getting mailbox changes into the store, in order, without a commit per mail.

:class:`BatchCommitter` is group commit one level up from the SQLite store's: while one
batch is being written, every change submitted meanwhile waits in the next batch, so
under load a batch holds hundreds of sends, leases and acks written with a few
``executemany`` statements in one transaction. Successive updates of one delivery in
the same batch (leased, then acknowledged) collapse into the last one. Under no load a
change is written at once. :class:`DirectCommitter` is for the in-memory store: it
applies at once, without suspending, which keeps in-process delivery cheap.

After a batch commits, ``after`` runs on it (in order, before any waiting sender
resumes): that is where committed mail becomes visible to readers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from wakeful.core.mail_records import Change, DeliveryState, NewEvents
from wakeful.core.scope import TaskScope
from wakeful.store.mail import MailStore, MemoryMailStore

log = structlog.get_logger("wakeful.mailbox")
AfterCommit = Callable[[Sequence[Change]], None]


class Committer:
    writes = 0  # changes written
    batches = 0  # transactions

    def submit(self, change: Change) -> None:
        """Write ``change`` soon, after everything submitted before it."""
        raise NotImplementedError

    async def commit(self, change: Change) -> None:
        """Write ``change`` after everything before it; return once it is committed."""
        raise NotImplementedError

    async def commit_all(self, changes: Sequence[Change]) -> None:
        """Write ``changes`` in order, in one batch; return once they are committed."""
        if not changes:
            return
        for change in changes[:-1]:
            self.submit(change)
        await self.commit(changes[-1])  # submitted together, so committed together

    async def barrier(self) -> None:
        """Return once everything submitted before this call is committed."""
        await self.commit(NewEvents([]))

    def start(self, scope: TaskScope) -> None:
        pass

    async def flush(self) -> None:
        pass


class DirectCommitter(Committer):
    def __init__(self, store: MemoryMailStore, after: AfterCommit) -> None:
        self._store = store
        self._after = after

    def submit(self, change: Change) -> None:
        self._store.apply_now((change,))
        self.writes += 1
        self.batches += 1
        self._after((change,))

    async def commit(self, change: Change) -> None:
        self.submit(change)


class BatchCommitter(Committer):
    def __init__(self, store: MailStore, after: AfterCommit) -> None:
        self._store = store
        self._after = after
        self._pending: list[Change] = []
        self._futures: list[asyncio.Future[None]] = []
        self._latest: dict[tuple[str, str], int] = {}  # delivery -> index in _pending
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self, scope: TaskScope) -> None:
        self._task = scope.spawn(self._run(), name="mailbox:committer")

    def submit(self, change: Change) -> None:
        if type(change) is DeliveryState:
            key = (change.row[-2], change.row[-1])
            index = self._latest.get(key)
            if index is not None:
                earlier = self._pending[index]
                assert isinstance(earlier, DeliveryState)
                self._pending[index] = DeliveryState(change.row,
                                                     earlier.wakeup or change.wakeup)
                return
            self._latest[key] = len(self._pending)
        self._pending.append(change)
        self._idle.clear()
        self._wake.set()

    async def commit(self, change: Change) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.append(future)
        self.submit(change)
        await future

    async def flush(self) -> None:
        if self._task is not None and not self._idle.is_set():
            await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                # Let readers woken by the last batch act first: their acks then share
                # this batch, often with the lease of the same mail (collapsed into one).
                await asyncio.sleep(0)
                batch, futures = self._pending, self._futures
                self._pending, self._futures, self._latest = [], [], {}
                error: Exception | None = None
                try:
                    await self._store.apply(batch)
                except Exception as exc:  # the store is broken; tell every waiter
                    error = exc
                    log.error("mailbox write failed", error=repr(exc), changes=len(batch))
                self.writes += len(batch)
                self.batches += 1
                if error is None:
                    try:
                        self._after(batch)
                    except Exception as exc:  # a bug: never leave senders hanging
                        log.exception("mailbox after-commit failed", error=repr(exc))
                for future in futures:
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
            self._idle.set()
