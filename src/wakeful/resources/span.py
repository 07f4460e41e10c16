"""One task's wait for one resource, with everything a wait touches (the task's
state, events, its place in line in the store, the wait-for graph): shared by
auto-pause and explicit locks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from wakeful.core.resources import Mode, Owner, Resource
from wakeful.resources.deadlock import Wait
from wakeful.resources.gate import Blocker
from wakeful.resources.state import KEEP_ALIVE_S

if TYPE_CHECKING:
    from wakeful.resources.leases import Leases
    from wakeful.toolkit.context import ToolContext


def _abort_with(future: asyncio.Future[None]) -> Callable[[BaseException], bool]:
    def abort(error: BaseException) -> bool:
        if future.done():
            return False
        future.set_exception(error)
        # Marked as seen: the waiter may be gone already (its task cut off or
        # cancelled), and an unseen exception would only be logged as never retrieved.
        future.exception()
        return True
    return abort


class _Span:
    """One task waiting for one resource, from the moment it is first blocked until it
    is granted or gives up: marks the task waiting, records ``resource.*`` events,
    keeps a place in line in the store (so other runtimes and ``wakeful locks`` see
    it) and keeps the wait-for graph up to date."""

    def __init__(self, manager: Leases, ctx: ToolContext | None, owner: Owner,
                 resource: Resource, mode: Mode, kind: str) -> None:
        self.manager = manager
        self.ctx = ctx
        self.owner = owner
        self.resource = resource
        self.mode = mode
        self.kind = kind
        self.wait: Wait | None = None
        self.started: float | None = None
        self.waiter_id: int | None = None
        self.last: list[Blocker] = []
        self._stack = AsyncExitStack()

    @property
    def waited_s(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    async def blocked(self, blockers: list[Blocker], live: Callable[[], list[Blocker]],
                      abort: Callable[[BaseException], bool],
                      listed: list[Blocker] | None = None) -> None:
        manager = self.manager
        before = {b.owner for b in self.last}
        self.last = blockers
        first = self.started is None
        added = self.wait is None
        if self.wait is None:
            self.wait = Wait(self.owner, live, abort, listed)
            manager.graph.add(self.wait)
        else:
            self.wait.blockers = live
            self.wait.abort = abort
            self.wait.listed = listed
        if added or {b.owner for b in blockers} != before:
            manager.detect(self.owner)  # an edge was inserted
        if not first:
            return
        self.started = time.monotonic()
        manager.emit("resource.wait", self.owner, resource=str(self.resource),
                     mode=self.mode.value, kind=self.kind,
                     blocked_by=[b.describe() for b in blockers])
        if self.ctx is not None:
            label = "auto-pause" if self.kind == "auto-pause" else "lock"
            await self._stack.enter_async_context(self.ctx.waiting(f"{label}: {self.resource}"))
        self.waiter_id = await manager.store.join_line(
            self.resource, self.mode, self.owner, kind=self.kind, process=manager.process,
            pid=manager.pid, keep_alive_s=KEEP_ALIVE_S)
        manager.lines.add(self.waiter_id)

    def clear(self) -> None:
        """No longer waiting (granted, or between two stages of one request)."""
        if self.wait is not None:
            self.manager.graph.remove(self.wait)
            self.wait = None

    async def close(self, outcome: str | None) -> None:
        self.clear()
        manager = self.manager
        try:
            if self.waiter_id is not None:
                manager.lines.discard(self.waiter_id)
                await manager.store.leave_line(self.waiter_id)
        finally:
            await self._stack.aclose()
        if self.started is not None and outcome in ("granted", "timeout"):
            data: dict[str, Any] = {"resource": str(self.resource), "mode": self.mode.value,
                                    "kind": self.kind,
                                    "waited_ms": round(self.waited_s * 1000, 3)}
            if outcome == "timeout":
                data["blocked_by"] = [b.describe() for b in self.last]
            manager.emit(f"resource.{outcome}", self.owner, **data)
