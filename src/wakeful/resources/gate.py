"""The in-process gate: a FIFO reader-writer lock table over resources.

Every operation on a resource in this runtime passes the gate: the short ones that
auto-pause (a tool call holds its resources for the tool's duration) and the long ones
(an explicit lock granted to a task is mirrored here until it is released or expires),
so both kinds queue in one line and see each other.

Rules: readers share, a writer excludes everyone, a task never waits for itself, and
requests are served strictly in arrival order among those that conflict: a request
waits while a conflicting request is held *or queued ahead of it*, so a stream of
readers cannot starve a writer and a late writer cannot jump a queue. ``file``
resources nest, so a request on ``file:docs`` conflicts with one on ``file:docs/a.md``.

Why a table instead of one ``asyncio.Lock`` per resource: nested resources and
readers/writers need one arrival order across several names, and the deadlock detector
needs to ask, at any moment, exactly who is blocking whom (:meth:`Gate.blockers`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from wakeful.core.resources import Mode, Owner, Resource, conflicts


@dataclass(frozen=True, slots=True)
class Blocker:
    """One reason a request cannot go ahead: ``owner`` holds, or is queued ahead for,
    ``resource`` in a conflicting ``mode``."""

    owner: Owner
    resource: Resource
    mode: Mode
    queued: bool = False  # queued ahead rather than holding
    token: int | None = None  # when it is an explicit lock

    def describe(self) -> str:
        if self.queued:
            return f"{self.resource}, where {self.owner} is queued ahead to {self.mode.value}"
        if self.token is not None:
            return (f"{self.resource} held by {self.owner} with a {self.mode.value} lock "
                    f"(token {self.token})")
        doing = "written" if self.mode is Mode.WRITE else "read"
        return f"{self.resource} being {doing} by {self.owner}"


@dataclass(eq=False)
class Request:
    owner: Owner
    resource: Resource
    mode: Mode
    kind: str  # "auto-pause" or "lock"
    seq: int = 0
    since: float = field(default_factory=time.monotonic)
    granted: bool = False
    token: int | None = None  # the fencing token of an explicit lock this mirrors
    future: asyncio.Future[None] | None = None


class Gate:
    def __init__(self) -> None:
        self._holders: dict[Resource, list[Request]] = {}
        self._waiters: dict[Resource, deque[Request]] = {}
        self._active: dict[str, set[Resource]] = {}  # kind -> resources in use
        self._holding: dict[Owner, int] = {}  # owner -> how many granted requests
        self._seq = itertools.count(1)
        # Called after every release (the waits of wakeful.schedule listen for "free").
        self.on_release: Callable[[Resource], None] | None = None

    # bookkeeping ---------------------------------------------------------
    def _touch(self, resource: Resource) -> None:
        self._active.setdefault(resource.kind, set()).add(resource)

    def _tidy(self, resource: Resource) -> None:
        if not self._holders.get(resource):
            self._holders.pop(resource, None)
        if not self._waiters.get(resource):
            self._waiters.pop(resource, None)
        if resource not in self._holders and resource not in self._waiters:
            active = self._active.get(resource.kind)
            if active is not None:
                active.discard(resource)

    def _overlapping(self, resource: Resource) -> Iterator[Resource]:
        active = self._active.get(resource.kind, ())
        if not resource.hierarchical:
            if resource in active:
                yield resource
            return
        for other in active:
            if resource.overlaps(other):
                yield other

    # queries -------------------------------------------------------------
    def blockers(self, request: Request) -> list[Blocker]:
        """Who stops ``request`` from being granted right now (empty: nobody).

        A task that already holds the resource (or a folder around it) in a strong
        enough mode does not queue behind those waiting: they wait for it anyway, and
        queueing would deadlock it with them.
        """
        found: list[Blocker] = []
        keys = list(self._overlapping(request.resource))
        covered = False
        for key in keys:
            for held in self._holders.get(key, ()):
                if held is request:
                    continue
                if held.owner != request.owner:
                    if conflicts(held.mode, request.mode):
                        found.append(Blocker(held.owner, key, held.mode, token=held.token))
                elif key.covers(request.resource) and (
                        held.mode is Mode.WRITE or request.mode is Mode.READ):
                    covered = True
        if covered:
            return found
        for key in keys:
            for waiting in self._waiters.get(key, ()):
                if waiting.seq >= request.seq:
                    break
                if waiting.owner != request.owner and conflicts(waiting.mode, request.mode):
                    found.append(Blocker(waiting.owner, key, waiting.mode, queued=True))
        return found

    def holds_any(self, owner: Owner) -> bool:
        """Does ``owner`` hold anything here (so that others could be waiting for it)?"""
        return owner in self._holding

    def _grant(self, request: Request) -> None:
        request.granted = True
        self._holders.setdefault(request.resource, []).append(request)
        self._holding[request.owner] = self._holding.get(request.owner, 0) + 1

    def holders(self) -> list[Request]:
        return [r for held in self._holders.values() for r in held]

    def waiters(self) -> list[Request]:
        return sorted((r for queue in self._waiters.values() for r in queue),
                      key=lambda r: r.seq)

    # acquire and release -------------------------------------------------
    def enter(self, owner: Owner, resource: Resource, mode: Mode, kind: str,
              token: int | None = None) -> tuple[Request, list[Blocker]]:
        """Ask for ``resource``: granted at once when nothing blocks it (no blockers
        returned), otherwise queued (await :meth:`wait`, or :meth:`cancel`)."""
        request = Request(owner, resource, mode, kind, seq=next(self._seq), token=token)
        found = self.blockers(request)
        self._touch(resource)
        if not found:
            self._grant(request)
        else:
            request.future = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(resource, deque()).append(request)
        return request, found

    async def wait(self, request: Request) -> None:
        """Wait for a queued request to be granted. On any exception (timeout,
        cancellation, a deadlock verdict set on the future) the request leaves the
        queue, or is released if it was granted in the meantime."""
        if request.granted:
            return
        assert request.future is not None
        try:
            await asyncio.shield(request.future)
        except BaseException:
            self.cancel(request)
            raise

    def fail(self, request: Request, error: BaseException) -> bool:
        """End a queued request's wait with ``error`` (the deadlock breaker)."""
        if request.granted or request.future is None or request.future.done():
            return False
        request.future.set_exception(error)
        return True

    def cancel(self, request: Request) -> None:
        """Withdraw a request, granted or not."""
        if request.granted:
            self.release(request)
            return
        queue = self._waiters.get(request.resource)
        if queue is not None and request in queue:
            queue.remove(request)
            self._tidy(request.resource)
            self._promote(request.resource)
        if request.future is not None and not request.future.done():
            request.future.cancel()

    def release(self, request: Request) -> None:
        held = self._holders.get(request.resource)
        if held is None or request not in held:
            return
        held.remove(request)
        request.granted = False
        count = self._holding.get(request.owner, 0) - 1
        if count > 0:
            self._holding[request.owner] = count
        else:
            self._holding.pop(request.owner, None)
        self._tidy(request.resource)
        self._promote(request.resource)
        if self.on_release is not None:
            self.on_release(request.resource)

    def _promote(self, resource: Resource) -> None:
        """Grant, in arrival order, the queued requests that nothing blocks any more.

        Only queues on resources overlapping the one just freed can have changed. In
        one queue, once a request is blocked every later one is too (it conflicts with
        that request or with what blocks it), so each queue is scanned up to its first
        blocked request.
        """
        heads: list[tuple[int, Resource]] = []
        for key in list(self._overlapping(resource)):
            queue = self._waiters.get(key)
            if queue:
                heads.append((queue[0].seq, key))
        heapq.heapify(heads)
        while heads:
            _, key = heapq.heappop(heads)
            queue = self._waiters.get(key)
            if not queue:
                continue
            head = queue[0]
            if head.future is not None and head.future.done():
                queue.popleft()  # abandoned (failed or cancelled) while we looked away
            elif self.blockers(head):
                continue
            else:
                queue.popleft()
                self._grant(head)
                if head.future is not None:
                    head.future.set_result(None)
            if queue:
                heapq.heappush(heads, (queue[0].seq, key))
            else:
                self._tidy(key)
