"""The resource manager: auto-pause for short operations, leases for long ones.

The rules, in one place:

* **Auto-pause.** A tool that declares the resources it touches (``@tool(resources=
  ...)``) runs only when nobody else is using them in a conflicting way: readers share,
  a writer excludes, and the line is first come, first served. A task that has to
  wait shows as *waiting* with the reason ``auto-pause: <resource>`` (its agent keeps
  running its other tasks) and ``resource.wait`` / ``resource.granted`` events are
  recorded. After ``auto_pause_timeout_s`` the tool call fails with a clear error.
* **Locks.** ``acquire_lock`` grants a lease held in the store, with a fencing token
  larger than any before it. Another task's conflicting operation, auto-pausing or
  not, waits while the lock is held (or until its lease lapses). The holder's own
  operations on the locked resource go ahead, and its writes are *fenced*: they
  present the lock's token (the one passed as ``fencing_token``, or else the one this
  runtime granted to the task) and are refused if that lock is no longer live: lease
  lapsed, released, or taken from it to break a deadlock. Writes that present no
  token are not fenced; they only wait their turn.
* **Across processes.** Locks and places in line live in the store, so runtimes
  sharing one store see each other's locks and respect each other's order. The
  auto-pause of operations without a lock is exact within one runtime; across
  runtimes, short operations respect locks and queued lock requests, but two
  unlocked short writes from two processes are not serialized with each other.
* **Deadlocks.** Every wait is an edge in a wait-for graph; a wait that closes a cycle
  is detected at once, the youngest task in the cycle has its wait ended with an error
  naming the cycle, and the locks it held that the others wait for are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from wakeful.core.locks import Acquired, Blocked, KVEntry, LockRow, WaiterRow
from wakeful.core.records import Event
from wakeful.core.resources import Access, Mode, Owner, Resource, ResourceKinds, conflicts
from wakeful.errors import (
    DeadlockError,
    ResourceError,
    StaleTokenError,
    WaitTimeoutError,
    WakefulError,
)
from wakeful.ids import new_id
from wakeful.project.definitions import ResourcesConfig
from wakeful.resources.deadlock import Wait, WaitForGraph, describe_cycle, victim_of
from wakeful.resources.gate import Blocker, Gate, Request
from wakeful.resources.workspace import Workspace
from wakeful.runtime.scope import TaskScope
from wakeful.store.locks import LockStore

if TYPE_CHECKING:
    from wakeful.observe.events import Subscription
    from wakeful.runtime.context import ToolContext
    from wakeful.runtime.runtime import Runtime

log = structlog.get_logger("wakeful.resources")

KEEP_ALIVE_S = 10.0  # a place in line lapses this long after its runtime stops renewing it
MAINTAIN_EVERY_S = 1.0
REAP_EVERY_S = 5.0
_TASK_ENDS = frozenset({"done", "failed", "cancelled"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ResourceUse:
    """Who is using a resource (empty: it is free), and when that may change on its own:
    the earliest lease expiry, and whether another runtime holds a lock (whose release
    this one only sees by looking at the store again)."""

    resource: str
    users: list[str]
    expires_at: float | None
    foreign: bool

    @property
    def free(self) -> bool:
        return not self.users


def owner_of(ctx: ToolContext) -> Owner:
    return Owner(ctx.task_id, ctx.agent)


@dataclass(frozen=True, slots=True)
class LockResult:
    """What came of an ``acquire_lock``: the lock, or who is in the way."""

    acquired: bool
    resource: str
    mode: Mode
    lock: LockRow | None = None
    already_held: bool = False
    blocked_by: list[str] = field(default_factory=list)
    waited_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        if self.lock is None:
            return {"acquired": False, "resource": self.resource, "mode": self.mode.value,
                    "blocked_by": self.blocked_by, "waited_s": round(self.waited_s, 3)}
        lease = self.lock.expires_at - self.lock.renewed_at
        return {"acquired": True, "resource": self.resource, "mode": self.lock.mode.value,
                "token": self.lock.token, "lease_s": round(lease, 3),
                "already_held": self.already_held, "waited_s": round(self.waited_s, 3),
                "note": "pass this token as fencing_token when you write; renew_lock before "
                        "the lease runs out; release_lock when done"}


@dataclass(frozen=True, slots=True)
class LocksView:
    """Everything about resources right now: the status API behind ``list_locks``."""

    now: float
    locks: list[LockRow]
    waiters: list[WaiterRow]
    gate: list[Request]  # this runtime's auto-pause holders and its in-memory line

    def to_dict(self, deadlocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        def age(since: float) -> float:
            return round(max(0.0, time.monotonic() - since), 3)

        return {
            "locks": [describe_lock(lock, self.now) for lock in self.locks],
            "waiting": [describe_waiter(w, self.now) for w in self.waiters],
            # short operations in progress here, and requests queued in this runtime
            "operations": [{"resource": str(r.resource), "mode": r.mode.value,
                            "task_id": r.owner.task_id, "agent": r.owner.agent,
                            "kind": r.kind, "state": "holding" if r.granted else "waiting",
                            "for_s": age(r.since)}
                           for r in self.gate if r.kind == "auto-pause" or not r.granted],
            "recent_deadlocks": deadlocks or [],
        }


def describe_lock(lock: LockRow, now: float) -> dict[str, Any]:
    return {"resource": lock.resource, "mode": lock.mode.value, "token": lock.token,
            "task_id": lock.owner.task_id, "agent": lock.owner.agent, "pid": lock.pid,
            "held_s": round(now - lock.acquired_at, 3),
            "lease_left_s": round(lock.expires_at - now, 3), "expired": not lock.live(now)}


def describe_waiter(waiter: WaiterRow, now: float) -> dict[str, Any]:
    return {"resource": waiter.resource, "mode": waiter.mode.value, "kind": waiter.kind,
            "task_id": waiter.owner.task_id, "agent": waiter.owner.agent, "pid": waiter.pid,
            "waiting_s": round(now - waiter.since, 3)}


def _abort_with(future: asyncio.Future[None]) -> Callable[[BaseException], bool]:
    def abort(error: BaseException) -> bool:
        if future.done():
            return False
        future.set_exception(error)
        return True
    return abort


class _Span:
    """One task waiting for one resource, from the moment it is first blocked until it
    is granted or gives up: marks the task waiting, records ``resource.*`` events,
    keeps a place in line in the store (so other runtimes and ``wakeful locks`` see
    it) and keeps the wait-for graph up to date."""

    def __init__(self, manager: ResourceManager, ctx: ToolContext | None, owner: Owner,
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


class ResourceManager:
    """The ``resources`` service: one per runtime, reachable as ``runtime.resources``."""

    name = "resources"

    def __init__(self, workspace: Path | str | None = None,
                 config: ResourcesConfig | None = None) -> None:
        self.config = config or ResourcesConfig()
        self.workspace = Workspace(workspace) if workspace is not None else None
        self.kinds = ResourceKinds()
        self.kinds.register("file", "a file or folder of the workspace", self._canonical_path,
                            hierarchical=True)
        self.gate = Gate()
        self.gate.on_release = lambda _: self._announce()
        self._change_listeners: list[Callable[[], None]] = []
        self.graph = WaitForGraph()
        self.process = new_id("rt")
        self.pid = os.getpid()
        self.lines: set[int] = set()  # this runtime's places in line in the store
        self.deadlocks: deque[str] = deque(maxlen=50)
        self._runtime: Runtime | None = None
        self._store: LockStore | None = None
        # Locks this runtime granted, per task, kept past expiry until the task releases
        # them, so a write that relies on one that lapsed is refused, not waved through.
        self._grants: dict[str, dict[int, LockRow]] = {}
        # The same, as the store remembers them (a task resumed by this process after
        # another one granted its locks): task -> [(resource, token)].
        self._stored: dict[str, list[tuple[Resource, int]]] = {}
        self._mirrors: dict[int, tuple[Request, LockRow]] = {}  # live locks, in the gate
        self._changed: asyncio.Future[None] | None = None
        self._kick: asyncio.Future[None] | None = None
        self._scope = TaskScope("resources")

    # service lifecycle ---------------------------------------------------
    async def start(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._store = runtime.store.locks()
        if self.workspace is not None:
            self.workspace.ensure()
        loop = asyncio.get_running_loop()
        self._changed = loop.create_future()
        self._kick = loop.create_future()
        feed = runtime.events.subscribe(
            lambda e: e.type == "task.state" and e.data.get("to") in _TASK_ENDS)
        self._scope.spawn(self._release_ended_tasks(feed), name="resources:task-ends")
        self._scope.spawn(self._maintain(), name="resources:leases")

    async def stop(self) -> None:
        await self._scope.aclose()
        for token in list(self._mirrors):
            self._drop_mirror(token)
        if self._store is not None:
            with contextlib.suppress(WakefulError):
                await self._store.forget_process(self.process)
        self.lines.clear()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise WakefulError("the resource manager is not started (start the runtime)")
        return self._runtime

    @property
    def store(self) -> LockStore:
        if self._store is None:
            raise WakefulError("the resource manager is not started (start the runtime)")
        return self._store

    def emit(self, type: str, owner: Owner, **data: Any) -> None:
        if self._runtime is not None:
            self._runtime.events.emit(type, agent=owner.agent, task_id=owner.task_id, data=data)

    # names ---------------------------------------------------------------
    def _canonical_path(self, path: str) -> str:
        return self._workspace().canonical(path)

    def _workspace(self) -> Workspace:
        if self.workspace is None:
            raise ResourceError("file resources need a workspace folder, and this runtime "
                                "has none (set 'workspace' in wakeful.yaml, or pass "
                                "workspace= to ResourceManager)")
        return self.workspace

    def parse(self, text: str) -> Resource:
        return self.kinds.parse(text)

    def path(self, path: str) -> Path:
        """The real path of a workspace path, refused if it leaves the workspace."""
        return self._workspace().resolve(path)

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
                await self._pause(abort, deadline, blockers, result.holders)
        except DeadlockError as exc:
            outcome = "deadlock"
            raise await self._give_up(owner, exc) from None
        finally:
            if request is not None:
                self.gate.cancel(request)
            await span.close(outcome)

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

    def _announce(self) -> None:
        for listener in self._change_listeners:
            listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever something is released in this runtime (an
        operation ends, a lock is released or lapses): the hook for waking those who
        wait for a resource to be free."""
        self._change_listeners.append(listener)

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
