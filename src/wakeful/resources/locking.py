"""Explicit locks: acquire with a lease and a fencing token, renew, release (the
protocol for long operations; the rules are in :mod:`wakeful.resources.manager`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from wakeful.core.locks import Acquired, Blocked, LockRow
from wakeful.core.resources import Mode, Owner, Resource
from wakeful.errors import DeadlockError, ResourceError, StaleTokenError
from wakeful.resources.autopause import AutoPause
from wakeful.resources.gate import Blocker, Request
from wakeful.resources.span import _abort_with, _Span
from wakeful.resources.state import owner_of
from wakeful.resources.views import LockResult

if TYPE_CHECKING:
    from wakeful.toolkit.context import ToolContext


class Locking(AutoPause):
    """The resource manager's explicit locks."""

    # explicit locks ------------------------------------------------------
    def _lease(self, lease_s: float | None) -> float:
        lease = self.config.default_lease_s if lease_s is None else lease_s
        if not 0 < lease <= self.config.max_lease_s:
            raise ResourceError(f"lease_s must be more than 0 and at most "
                                f"{self.config.max_lease_s:g} s (resources.max_lease_s); "
                                f"got {lease:g}")
        return lease

    async def acquire(self, ctx: ToolContext, resource_name: str, mode: Mode | str = Mode.WRITE,
                      lease_s: float | None = None, wait_s: float = 0.0) -> LockResult:
        """Take a lease on a resource: at once (``wait_s=0``: try) or waiting in line up
        to ``wait_s`` seconds. Not getting it is a result, not an error; a deadlock is an
        error."""
        resource = self.parse(resource_name)
        mode = Mode(mode)
        lease = self._lease(lease_s)
        if not 0 <= wait_s <= self.config.max_lock_wait_s:
            raise ResourceError(f"wait_s must be between 0 and {self.config.max_lock_wait_s:g} "
                                f"s (resources.max_lock_wait_s); got {wait_s:g}")
        owner = owner_of(ctx)
        if mode is Mode.WRITE:  # (the store refuses it too; this answers before queueing)
            for lock in self._grants.get(owner.task_id, {}).values():
                if (lock.resource == str(resource) and lock.mode is Mode.READ
                        and lock.expires_at > time.time()):
                    raise ResourceError(
                        f"{owner} holds a read lock on {resource} (token {lock.token}) and "
                        "asked for a write lock; release the read lock first, then acquire "
                        "the write lock")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s if wait_s > 0 else None
        span = _Span(self, ctx, owner, resource, mode, "lock")
        request: Request | None
        request, blockers = self.gate.enter(owner, resource, mode, "lock")
        outcome: str | None = None

        def missed(blocked: list[Blocker]) -> LockResult:
            return LockResult(False, str(resource), mode,
                              blocked_by=[b.describe() for b in blocked],
                              waited_s=span.waited_s)

        try:
            if not request.granted:
                if deadline is None:
                    return missed(blockers)
                try:
                    await self._through_gate(span, request, blockers, deadline)
                except TimeoutError:
                    outcome = "timeout"
                    return missed(span.last)
            span.clear()
            abort: asyncio.Future[None] = loop.create_future()
            current: list[Blocker] = []
            while True:
                result = await self.store.acquire(resource, mode, owner, process=self.process,
                                                  pid=self.pid, lease_s=lease,
                                                  waiter_id=span.waiter_id)
                self._note_expired(result.expired)
                if isinstance(result, Acquired):
                    self._granted(owner, request, result)
                    request = None  # the gate entry now mirrors the lock
                    outcome = "granted"
                    self.emit("resource.lock_acquired", owner, resource=str(resource),
                              mode=result.lock.mode.value, token=result.lock.token,
                              lease_s=lease, already_held=result.already_held,
                              waited_ms=round(span.waited_s * 1000, 3))
                    return LockResult(True, str(resource), mode, result.lock,
                                      result.already_held, waited_s=span.waited_s)
                blockers = self._store_blockers(result)
                if deadline is None:
                    return missed(blockers)
                if loop.time() >= deadline:
                    outcome = "timeout"
                    return missed(blockers)
                current[:] = blockers
                await span.blocked(blockers, lambda: list(current), _abort_with(abort),
                                   current)
                await self._across_workers(owner)
                await self._pause(abort, deadline, blockers, result.holders)
        except DeadlockError as exc:
            outcome = "deadlock"
            raise await self._give_up(owner, exc) from None
        finally:
            if request is not None:
                self.gate.cancel(request)
            await span.close(outcome)

    async def _across_workers(self, owner: Owner) -> None:
        """A cycle of lock waits that spans workers is seen only in the store: if this
        wait closes one and this task is the youngest in it, it gives up (as in-process
        cycles are resolved); an older task waits for the youngest's worker to see it."""
        cycle = await self.store.wait_cycle(owner.task_id)
        if not cycle or max(cycle) != owner.task_id:
            return
        others = set(cycle) - {owner.task_id}
        wanted = await self.store.locks_of(owner.task_id)
        tokens = [lock.token for lock in wanted
                  if lock.owner.task_id == owner.task_id and others]
        raise DeadlockError(f"deadlock across workers: {' -> '.join([*cycle, cycle[0]])} "
                            "wait for each other's locks", cycle, tokens)

    def _store_blockers(self, blocked: Blocked) -> list[Blocker]:
        return ([Blocker(lock.owner, self.kinds.canonical(lock.resource), lock.mode,
                         token=lock.token) for lock in blocked.holders]
                + [Blocker(w.owner, self.kinds.canonical(w.resource), w.mode, queued=True)
                   for w in blocked.queued])

    def _granted(self, owner: Owner, request: Request, acquired: Acquired) -> None:
        lock = acquired.lock
        existing = self._mirrors.get(lock.token)
        if existing is not None:
            self.gate.release(request)
            self._mirrors[lock.token] = (existing[0], lock)
        else:
            request.token = lock.token
            self._mirrors[lock.token] = (request, lock)
        grants = self._grants.setdefault(owner.task_id, {})
        for token, old in list(grants.items()):
            if old.resource == lock.resource and token != lock.token:
                del grants[token]  # superseded by the new grant
        grants[lock.token] = lock
        self._wake_maintainer()

    async def _my_locks(self, owner: Owner, resource: Resource) -> list[LockRow]:
        known = [g for g in self._grants.get(owner.task_id, {}).values()
                 if g.resource == str(resource)]
        if known:
            return known
        return [lock for lock in await self.store.locks_of(owner.task_id)
                if lock.resource == str(resource)]

    async def renew(self, ctx: ToolContext, resource_name: str,
                    lease_s: float | None = None) -> LockRow:
        """Extend the lease of this task's lock; refused once the lease has lapsed."""
        resource = self.parse(resource_name)
        lease = self._lease(lease_s)
        owner = owner_of(ctx)
        mine = await self._my_locks(owner, resource)
        if not mine:
            raise ResourceError(f"{owner} holds no lock on {resource}; acquire_lock first")
        token = max(lock.token for lock in mine)
        try:
            lock = await self.store.renew(token, owner, lease)
        except StaleTokenError as exc:
            self.emit("resource.stale_token", owner, resource=str(resource), token=token,
                      mode="renew", reason=str(exc))
            raise StaleTokenError(f"cannot renew the lock on {resource}: {exc}") from None
        self._grants.setdefault(owner.task_id, {})[token] = lock
        if token in self._mirrors:
            self._mirrors[token] = (self._mirrors[token][0], lock)
        else:
            request, _ = self.gate.enter(owner, resource, lock.mode, "lock", token=token)
            if request.granted:
                self._mirrors[token] = (request, lock)
            else:
                self.gate.cancel(request)
        self.emit("resource.lock_renewed", owner, resource=str(resource), token=token,
                  lease_s=lease)
        self._wake_maintainer()
        return lock

    async def release(self, ctx: ToolContext, resource_name: str) -> dict[str, Any]:
        """Give up this task's lock on a resource."""
        resource = self.parse(resource_name)
        owner = owner_of(ctx)
        mine = await self._my_locks(owner, resource)
        if not mine:
            raise ResourceError(f"{owner} holds no lock on {resource}; nothing to release")
        answer: dict[str, Any] = {"resource": str(resource), "released": False}
        for lock in mine:
            row, now = await self.store.release(lock.token, owner)
            self._drop_mirror(lock.token)
            self._grants.get(owner.task_id, {}).pop(lock.token, None)
            answer["token"] = lock.token
            if row is not None and row.live(now):
                answer["released"] = True
                self.emit("resource.lock_released", owner, resource=row.resource,
                          token=row.token, reason="released", held_s=round(
                              now - row.acquired_at, 3))
            else:
                answer["note"] = (f"the lease of token {lock.token} had already lapsed; "
                                  "writes with it are refused")
        self._notify()
        return answer
