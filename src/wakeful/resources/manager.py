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
from typing import TYPE_CHECKING

from wakeful.errors import WakefulError
from wakeful.resources.locking import Locking
from wakeful.resources.state import _TASK_ENDS

if TYPE_CHECKING:
    from wakeful.resources.host import ResourceHost


class ResourceManager(Locking):
    """The ``resources`` service: one per runtime, reachable as ``runtime.resources``.

    One object composed of its parts: :mod:`~wakeful.resources.autopause`,
    :mod:`~wakeful.resources.locking` and :mod:`~wakeful.resources.leases`, over the state in
    :mod:`~wakeful.resources.state`; this module holds the rules and its lifecycle."""

    name = "resources"

    # service lifecycle ---------------------------------------------------
    async def start(self, runtime: ResourceHost) -> None:
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
        if runtime.store.notifies:
            self._scope.spawn(self._hear_releases(runtime), name="resources:doorbell")

    async def _hear_releases(self, runtime: ResourceHost) -> None:
        """A lock released by another worker: waiters here look at the store again now
        (without the doorbell they would look on their next poll)."""
        bells = runtime.store.bells
        bell = bells.subscribe(("locks",))
        try:
            while True:
                if await bell.wait(None):
                    self._notify()
        finally:
            bells.unsubscribe(bell)

    async def stop(self) -> None:
        await self._scope.aclose()
        for token in list(self._mirrors):
            self._drop_mirror(token)
        if self._store is not None:
            with contextlib.suppress(WakefulError):
                await self._store.forget_process(self.process)
        self.lines.clear()
