"""A one-shot command on a store that cannot take writes: one line and a non-zero exit.

The stores hold writes through an outage (a full disk, a store made read-only,
PostgreSQL gone) and apply them once the store takes writes again: right for a
runtime, which must lose nothing, but a command would wait forever, printing the
store's log line instead of an answer (issue 16). Commands therefore run their store
work through :func:`session`, which gives up as soon as the store reports an outage:
the work is cancelled, the held writes are dropped (each write is its own
transaction, so nothing is half-written) and the command fails with what failed and
where. Running it again once the store takes writes does the whole thing once.

Errors from the file system that reach a command anyway (``init`` on a full disk, a
store folder that cannot be made) are turned into the same kind of line by
:class:`Commands`, the group class of the ``wakeful`` app.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import structlog
from typer.core import TyperGroup

from wakeful.errors import StoreError, WakefulError
from wakeful.store import Store

T = TypeVar("T")
WATCH_INTERVAL_S = 0.05  # how often a command looks at the store's outage flag


@runtime_checkable
class HoldsWrites(Protocol):
    """A store that keeps its writes through an outage (both backends do)."""

    @property
    def outage(self) -> str | None: ...

    async def close(self, outage_grace_s: float = ...) -> None: ...


class StoreWriteError(WakefulError):
    """The store could not take this command's writes; the command was stopped."""


def diagnose(where: str) -> str:
    """Why the file system holding a SQLite store refuses writes, when it can be told
    (SQLite says only "disk I/O error" when it cannot even make its shared-memory
    file on a full disk); empty for a server store or when nothing is seen."""
    if "://" in where:
        return ""
    path = Path(where)
    target = path if path.exists() else path.parent
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        stats = os.statvfs(target)
    except OSError:
        return ""
    if stats.f_flag & os.ST_RDONLY:
        return f"{target} is on a read-only file system"
    if stats.f_bavail == 0 or stats.f_favail == 0:
        return f"the file system holding {target} has no space left"
    if not os.access(target, os.W_OK):
        return f"no permission to write {target}"
    return ""


def _explain(reason: str, where: str) -> str:
    seen = diagnose(where)
    return f"{reason}; {seen}" if seen and seen not in reason else reason


def write_failure(where: str, reason: str) -> StoreWriteError:
    return StoreWriteError(
        f"the store {where} cannot take writes ({_explain(reason, where)}); "
        "the command stopped without finishing, nothing half-written: run it again once "
        "the store takes writes")


def outage(store: Store) -> str | None:
    return store.outage if isinstance(store, HoldsWrites) else None


async def watched(store: Store, where: str, work: Awaitable[T]) -> T:
    """``await work``, unless the store reports an outage first: then cancel it and
    raise :class:`StoreWriteError` (the store would hold its writes until it
    recovers)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=WATCH_INTERVAL_S)
            if done:
                return task.result()
            reason = outage(store)
            if reason is not None:
                raise write_failure(where, reason)
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def close(store: Store) -> None:
    """Close a store; during an outage at once, dropping the writes it still holds
    (they fail their waiters instead of being retried for seconds)."""
    if isinstance(store, HoldsWrites) and store.outage is not None:
        await store.close(outage_grace_s=0)
    else:
        await store.close()


async def open_watched(store: Store, where: str,
                       opener: Callable[[], Awaitable[Any]] | None = None) -> None:
    """Open a store (``opener`` opens it, when given); a failure to open names the
    store and, when it can be told, the file system's state (full, read-only)."""
    try:
        await (opener or store.open)()
    except StoreError as exc:
        raise diagnosed(exc, where) from None


def diagnosed(exc: StoreError, where: str) -> StoreError:
    """``exc`` with what the file system under the store says, when it says more."""
    seen = diagnose(where)
    return StoreError(f"{exc} ({seen})") if seen and seen not in str(exc) else exc


async def session(store: Store, where: str, action: Callable[[], Awaitable[T]],
                  opened: Callable[[], Awaitable[Any]] | None = None) -> T:
    """Open ``store`` (or run ``opened``, which opens it), run ``action`` and wait for
    every write it queued, then close the store: the whole of a command's time on the
    store, given up with one clear error at the first outage."""
    with quiet_logs():
        await open_watched(store, where, opened)
        try:
            async def work() -> T:
                result = await action()
                await store.flush()  # the events it queued without waiting
                return result

            return await watched(store, where, work())
        finally:
            await close(store)


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """A command answers for its own store: its error line says what the store's log
    lines would ("holding the writes and retrying", meant for a long-running worker),
    and they would land on stdout, in the middle of a listing or its JSON."""
    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr),
                        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        structlog.configure(**saved)


REASONS = {errno.ENOSPC: "no space left on the device",
           errno.EROFS: "the file system is read-only",
           errno.EDQUOT: "the disk quota is used up"}


def describe_os_error(exc: OSError) -> str:
    """One line for a file system error: where, and the reason in words. A failed
    ``shutil.copytree`` (``init`` on a full disk) is one error per file; the first
    says it."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        _, target, why = exc.args[0][0]
        found = re.match(r"\[Errno (\d+)\] ([^:]+)", str(why))
        number = int(found.group(1)) if found else None
        reason = REASONS.get(number or -1, found.group(2) if found else str(why))
        return f"{target}: {reason}"
    where = exc.filename or ""
    if exc.filename2:
        where = f"{where} -> {exc.filename2}"
    reason = REASONS.get(exc.errno or -1, exc.strerror or str(exc))
    return f"{where}: {reason}" if where else reason


class Commands(TyperGroup):
    """The ``wakeful`` group: a file system error that reaches a command (a full disk,
    a read-only folder) ends it with one line, not a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except OSError as exc:
            from wakeful.cli.common import fail

            raise fail(describe_os_error(exc)) from None  # its path says what and where
