"""A small owner for background asyncio tasks (structured concurrency).

Every task the runtime starts is spawned into a :class:`TaskScope` that outlives it:
closing the scope cancels whatever is still running and awaits it, so no task is left
behind on shutdown. Children are expected to handle their own errors (the supervisor
does); anything that still escapes is logged, never silently lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("wakeful.scope")
RECANCEL_AFTER_S = 1.0


class TaskScope:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise RuntimeError(f"task scope {self.name!r} is closed; cannot start {name!r}")
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("unhandled error in background task", scope=self.name,
                      task=task.get_name(), error=repr(task.exception()))

    def __len__(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel every child and wait for all of them to finish.

        A child still running a while after its cancel is cancelled again: on Python
        3.11 ``asyncio.wait_for`` swallows a cancel that arrives just as what it waits
        for completes, and such a child would otherwise keep the scope open forever."""
        self._closed = True
        while self._tasks:
            pending = set(self._tasks)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=RECANCEL_AFTER_S)
