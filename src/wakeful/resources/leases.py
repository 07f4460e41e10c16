"""Leases, mirrors and housekeeping: lapsed leases freed as they lapse, places in line
kept alive, locks of ended tasks released, deadlocks broken, and the status view.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from wakeful.core.locks import LockRow
from wakeful.core.records import Event
from wakeful.core.resources import Mode, Owner
from wakeful.errors import DeadlockError, WakefulError
from wakeful.resources.deadlock import describe_cycle, victim_of
from wakeful.resources.state import KEEP_ALIVE_S, MAINTAIN_EVERY_S, REAP_EVERY_S, ManagerState, log
from wakeful.resources.views import LocksView, ResourceUse

if TYPE_CHECKING:
    from wakeful.observe.events import Subscription


class Leases(ManagerState):
    """The resource manager's housekeeping and deadlock breaking."""

    # deadlocks ---------------------------------------------------------
    def detect(self, start: Owner) -> None:
        """Called when ``start`` begins to wait on someone: break any cycle it closed.

        A cycle through ``start`` needs an edge *into* it: someone waiting for what it
        holds or for its place in line. A task that has just joined the line is last in
        it, so if it holds nothing in the gate and no wait on the store names it, there
        is no such edge and the search (quadratic in a long line) is skipped.
        """
        if not self.gate.holds_any(start) and not self.graph.listed_as_blocker(start):
            return
        cycle = self.graph.find_cycle(start)
        if cycle is None:
            return
        members = sorted({edge.waiter for edge in cycle}, key=lambda o: o.task_id,
                         reverse=True)
        assert victim_of(cycle) == members[0]
        for victim in members:
            wait = self.graph.waiting(victim)
            if wait is None:
                continue
            message = describe_cycle(cycle, victim)
            tokens = sorted({e.blocker.token for e in cycle
                             if e.blocker.owner == victim and e.blocker.token is not None})
            error = DeadlockError(message, [str(e.waiter) for e in cycle], tokens)
            if wait.abort(error):
                self.deadlocks.append(message)
                self.emit("resource.deadlock", victim, message=message,
                          victim=victim.task_id,
                          cycle=[{"task_id": e.waiter.task_id, "agent": e.waiter.agent,
                                  "waits_for": str(e.blocker.resource),
                                  "held_by": e.blocker.owner.task_id} for e in cycle])
                return

    async def _give_up(self, owner: Owner, error: DeadlockError) -> DeadlockError:
        """This task lost a deadlock: release the locks the others wait for."""
        released: list[LockRow] = []
        for token in error.tokens:
            row, now = await self.store.release(token, owner)
            self._drop_mirror(token)
            if row is not None:
                released.append(row)
                self.emit("resource.lock_released", owner, resource=row.resource,
                          token=token, reason="deadlock", held_s=round(now - row.acquired_at, 3))
        self._notify()
        message = (f"{error}; {owner} is the youngest task in the cycle, so its wait was "
                   "ended")
        if released:
            names = ", ".join(f"{row.resource} (token {row.token})" for row in released)
            message += (f" and its lock on {names} was released so the others can go on; "
                        "acquire it again if you still need it")
        return DeadlockError(message, error.cycle, error.tokens)

    # leases, mirrors and housekeeping -------------------------------------
    def _drop_mirror(self, token: int) -> None:
        entry = self._mirrors.pop(token, None)
        if entry is not None:
            self.gate.release(entry[0])

    def _notify(self) -> None:
        """Something was released here: waiters re-check the store now."""
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
            self._changed = asyncio.get_running_loop().create_future()
        self._announce()

    async def users(self, resource_name: str) -> ResourceUse:
        """Who uses a resource (or one inside or around it) right now: operations and
        locks of this runtime, and live locks in the store from any runtime."""
        resource = self.parse(resource_name)
        users = [str(r.owner) for r in self.gate.holders() if r.resource.overlaps(resource)]
        check = await self.store.check(resource, Mode.WRITE, Owner("", ""), self.process,
                                       None)
        live = [lock for lock in check.locks if lock.live(check.now)]
        users += [f"{lock.owner} ({lock.mode.value} lock, token {lock.token})" for lock in live
                  if not any(str(lock.owner) in u for u in users)]
        return ResourceUse(str(resource), sorted(set(users)),
                           min((lock.expires_at for lock in live), default=None),
                           any(lock.process != self.process for lock in live))

    def _wake_maintainer(self) -> None:
        if self._kick is not None and not self._kick.done():
            self._kick.set_result(None)

    def _note_expired(self, expired: list[LockRow]) -> None:
        for lock in expired:
            self._drop_mirror(lock.token)
            self.emit("resource.lock_expired", lock.owner, resource=lock.resource,
                      mode=lock.mode.value, token=lock.token, pid=lock.pid,
                      held_s=round(lock.expires_at - lock.acquired_at, 3))
        if expired:
            self._notify()

    async def _maintain(self) -> None:
        """Free this runtime's lapsed leases when they lapse, keep its places in line
        alive, and clear out lapsed leases and dead waits of runtimes that died."""
        loop = asyncio.get_running_loop()
        last_reap = 0.0
        while True:
            timeout = MAINTAIN_EVERY_S
            if self._mirrors:
                soonest = min(lock.expires_at for _, lock in self._mirrors.values())
                timeout = max(0.0, min(timeout, soonest - time.time() + 0.01))
            assert self._kick is not None
            await asyncio.wait({self._kick}, timeout=timeout)
            if self._kick.done():
                self._kick = loop.create_future()
            now = time.time()
            lapsed = [t for t, (_, lock) in self._mirrors.items() if lock.expires_at <= now]
            if lapsed or self.lines or now - last_reap >= REAP_EVERY_S:
                try:
                    expired = await self.store.reap(sorted(self.lines), KEEP_ALIVE_S)
                except WakefulError as exc:
                    log.error("could not reap lapsed leases", error=str(exc))
                    expired = []
                last_reap = now
                self._note_expired(expired)
            for token in lapsed:
                self._drop_mirror(token)
            if lapsed:
                self._notify()

    async def _release_ended_tasks(self, feed: Subscription) -> None:
        """A task that ends gives up its locks (its lease would lapse anyway)."""
        try:
            async for event in feed:
                await self._release_task(event)
        finally:
            feed.close()

    async def _release_task(self, event: Event) -> None:
        task_id = event.task_id
        if task_id is None or (task_id not in self._grants and task_id not in self._stored):
            return
        self._grants.pop(task_id, None)
        self._stored.pop(task_id, None)
        try:
            rows = await self.store.release_all(task_id)
        except WakefulError as exc:
            log.error("could not release an ended task's locks", task=task_id, error=str(exc))
            return
        for row in rows:
            self._drop_mirror(row.token)
            self.emit("resource.lock_released", row.owner, resource=row.resource,
                      token=row.token, reason=f"task {event.data.get('to')}")
        for token, (request, _) in list(self._mirrors.items()):
            if request.owner.task_id == task_id:
                self._drop_mirror(token)
        self._notify()

    # status --------------------------------------------------------------
    async def view(self) -> LocksView:
        now, locks, waiters = await self.store.snapshot()
        return LocksView(now, locks, waiters, self.gate.holders() + self.gate.waiters())
