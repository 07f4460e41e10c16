"""Auto-pause: short operations that declare their resources wait their turn, in this
runtime's gate and behind the store's locks, and fenced writes (the rules are in
:mod:`wakeful.resources.manager`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from wakeful.core.locks import KVEntry, LockRow, WaiterRow
from wakeful.core.resources import Access, Mode, Owner, Resource, conflicts
from wakeful.errors import DeadlockError, StaleTokenError, WaitTimeoutError
from wakeful.resources.gate import Blocker, Request
from wakeful.resources.leases import Leases
from wakeful.resources.span import _abort_with, _Span
from wakeful.resources.state import owner_of

if TYPE_CHECKING:
    from wakeful.toolkit.context import ToolContext


T = TypeVar("T")


class AutoPause(Leases):
    """The resource manager's auto-pause and fenced writes."""

    # auto-pause ----------------------------------------------------------
    @asynccontextmanager
    async def guard(self, ctx: ToolContext, accesses: Iterable[Access]) -> AsyncIterator[None]:
        """Hold ``accesses`` for the body's duration, waiting (auto-pausing) for others.

        Resources are taken in one canonical order, so two calls that each touch the
        same two resources can never deadlock with each other.
        """
        owner = owner_of(ctx)
        if owner.task_id not in self._stored and owner.task_id not in self._grants:
            self._stored[owner.task_id] = [
                (self.kinds.canonical(r), t) for r, t in await self.store.grants_of(
                    owner.task_id)]
        planned: dict[Resource, tuple[Mode, int | None]] = {}
        for access in accesses:
            resource = self.parse(access.resource)
            mode = Mode(access.mode)
            previous = planned.get(resource)
            if previous is not None:
                mode = Mode.WRITE if Mode.WRITE in (mode, previous[0]) else mode
            planned[resource] = (mode, access.token if access.token is not None
                                 else (previous[1] if previous else None))
        deadline = asyncio.get_running_loop().time() + self.config.auto_pause_timeout_s
        held: list[Request] = []
        try:
            for resource in sorted(planned):
                mode, token = planned[resource]
                held.append(await self._auto_pause(ctx, owner, resource, mode, token, deadline))
            yield
        finally:
            for request in reversed(held):
                self.gate.release(request)

    async def _auto_pause(self, ctx: ToolContext, owner: Owner, resource: Resource, mode: Mode,
                          token: int | None, deadline: float) -> Request:
        if token is not None or self._implicit_token(owner, resource, mode) is not None:
            # A write on the strength of a lock: refuse a stale token now, rather than
            # after waiting behind the very lock that superseded it.
            check = await self.store.check(resource, mode, owner, self.process, None)
            await self._judge(owner, resource, mode, token, check.now, check.locks, [])
        span = _Span(self, ctx, owner, resource, mode, "auto-pause")
        request, blockers = self.gate.enter(owner, resource, mode, "auto-pause")
        outcome: str | None = None
        try:
            if not request.granted:
                await self._through_gate(span, request, blockers, deadline)
            span.clear()
            await self._clear_with_store(span, owner, resource, mode, token, deadline)
            outcome = "granted"
            return request
        except TimeoutError:
            outcome = "timeout"
            bound = self.config.auto_pause_timeout_s
            reasons = "; ".join(b.describe() for b in span.last) or "busy"
            raise WaitTimeoutError(
                f"auto-pause: {owner} waited {span.waited_s:.1f} s to {mode.value} "
                f"{resource} and gave up (the limit is resources.auto_pause_timeout_s = "
                f"{bound:g} s): {reasons}. Try again later, or coordinate through "
                "acquire_lock") from None
        except DeadlockError as exc:
            outcome = "deadlock"
            raise await self._give_up(owner, exc) from None
        finally:
            if outcome != "granted":
                self.gate.cancel(request)
            await span.close(outcome)

    async def _through_gate(self, span: _Span, request: Request, blockers: list[Blocker],
                            deadline: float) -> None:
        """Wait in this runtime's line (raises TimeoutError at ``deadline``)."""
        await span.blocked(blockers, lambda: self.gate.blockers(request),
                           lambda error: self.gate.fail(request, error))
        async with asyncio.timeout_at(deadline):
            await self.gate.wait(request)

    async def _clear_with_store(self, span: _Span, owner: Owner, resource: Resource,
                                mode: Mode, token: int | None, deadline: float) -> None:
        """Wait until no lock in the store (from any runtime) stands in the way, and
        check the fencing token if the operation presents one."""
        loop = asyncio.get_running_loop()
        abort: asyncio.Future[None] = loop.create_future()
        current: list[Blocker] = []
        while True:
            check = await self.store.check(resource, mode, owner, self.process, span.waiter_id)
            blockers = await self._judge(owner, resource, mode, token, check.now, check.locks,
                                         check.queued)
            if not blockers:
                return
            if loop.time() >= deadline:
                raise TimeoutError
            current[:] = blockers
            await span.blocked(blockers, lambda: list(current), _abort_with(abort), current)
            await self._pause(abort, deadline, blockers, check.locks)

    async def _judge(self, owner: Owner, resource: Resource, mode: Mode, token: int | None,
                     now: float, locks: list[LockRow], queued: list[WaiterRow]
                     ) -> list[Blocker]:
        """What stops this operation, given the store's locks; refuse a stale token."""
        named = [(self.kinds.canonical(lock.resource), lock) for lock in locks]
        mine = [(r, lock) for r, lock in named if lock.owner.task_id == owner.task_id
                and lock.live(now) and r.covers(resource)
                and (mode is Mode.READ or lock.mode is Mode.WRITE)]
        presented = token
        if presented is None and not mine:
            presented = self._implicit_token(owner, resource, mode)
        covered = bool(mine)
        if presented is not None:
            await self._check_token(owner, resource, mode, presented, now, named)
            covered = True
        blockers = [Blocker(lock.owner, r, lock.mode, token=lock.token) for r, lock in named
                    if lock.owner.task_id != owner.task_id and lock.live(now)
                    and r.overlaps(resource) and conflicts(lock.mode, mode)]
        if not covered:  # a lock holder does not queue behind those waiting for its lock
            blockers += [Blocker(w.owner, self.kinds.canonical(w.resource), w.mode, queued=True)
                         for w in queued]
        return blockers

    def _implicit_token(self, owner: Owner, resource: Resource, mode: Mode) -> int | None:
        """For a write: the token of the newest write lock this runtime granted the task
        on the resource (or a folder around it), lapsed or not."""
        if mode is not Mode.WRITE:
            return None
        known = [g.token for g in self._grants.get(owner.task_id, {}).values()
                 if g.mode is Mode.WRITE and self.kinds.canonical(g.resource).covers(resource)]
        known += [t for r, t in self._stored.get(owner.task_id, ()) if r.covers(resource)]
        return max(known) if known else None

    async def write_fenced(self, ctx: ToolContext, resource_name: str, token: int | None,
                           write: Callable[[], T]) -> T:
        """Do a write (inside :meth:`guard`), fenced in the store's own transaction when
        the task writes on the strength of a lock: the token presented, or the newest
        write lock the task was ever granted on the resource (remembered in the store,
        so a task resumed after a crash is fenced too). A stale token refuses the write
        with no window in which a successor's lock could slip in."""
        owner = owner_of(ctx)
        resource = self.parse(resource_name)
        fence = token if token is not None else self._implicit_token(owner, resource,
                                                                      Mode.WRITE)
        if fence is None:
            return await asyncio.to_thread(write)
        return await self.store.fenced(fence, owner.task_id, write, str(resource))

    async def kv_set(self, ctx: ToolContext, key: str, value: object, token: int | None
                     ) -> KVEntry:
        """Set a shared value (inside :meth:`guard`), fenced like :meth:`write_fenced`."""
        owner = owner_of(ctx)
        fence = token if token is not None else self._implicit_token(
            owner, self.parse(f"kv:{key}"), Mode.WRITE)
        return await self.store.kv_set(key, value, f"{ctx.agent}/{ctx.task_id}",
                                       None if fence is None else (fence, owner.task_id))

    async def _check_token(self, owner: Owner, resource: Resource, mode: Mode, token: int,
                           now: float, named: list[tuple[Resource, LockRow]]) -> None:
        row = next((lock for _, lock in named if lock.token == token), None)
        if row is None:
            row = await self.store.get_lock(token)
        problem: str | None = None
        if row is None:
            problem = "that lock no longer exists (it was released, or its lease lapsed)"
        elif row.owner.task_id != owner.task_id:
            problem = f"it belongs to {row.owner}"
        elif not row.live(now):
            problem = f"its lease expired {now - row.expires_at:.1f} s ago"
        elif not self.kinds.canonical(row.resource).covers(resource):
            problem = f"it is a lock on {row.resource}, which does not cover {resource}"
        elif mode is Mode.WRITE and row.mode is Mode.READ:
            problem = "it is a read lock, and writing needs a write lock"
        if problem is None:
            return
        held = [f"{lock.owner} holds it with token {lock.token}" for r, lock in named
                if lock.live(now) and lock.owner.task_id != owner.task_id and r.overlaps(resource)]
        now_held = f"; now {', '.join(held)}" if held else ""
        message = (f"fencing token {token} is stale for {resource}: {problem}{now_held}. "
                   f"The {mode.value} was refused; acquire the lock again and use its new token")
        self.emit("resource.stale_token", owner, resource=str(resource), token=token,
                  mode=mode.value, reason=problem)
        raise StaleTokenError(message)

    async def _pause(self, abort: asyncio.Future[None], deadline: float,
                     blockers: list[Blocker], locks: list[LockRow]) -> None:
        """Sleep until something may have changed: a lock released in this runtime, the
        next lease in the way lapsing, or (for other runtimes' changes) a short poll."""
        loop = asyncio.get_running_loop()
        timeout = self.config.poll_interval_s
        tokens = {b.token for b in blockers if b.token is not None}
        expiries = [lock.expires_at for lock in locks if lock.token in tokens]
        if expiries:
            timeout = min(timeout, max(0.0, min(expiries) - time.time()) + 0.02)
        timeout = min(timeout, max(0.0, deadline - loop.time()))
        assert self._changed is not None
        await asyncio.wait({abort, self._changed}, timeout=timeout)
        if abort.done():
            abort.result()  # raises the deadlock verdict
