"""The locks family port: explicit lease locks with fencing tokens, their lines of
waiters, and the shared key-value scratchpad.

Contracts every backend keeps: "now" is the store's clock (read in the operation's own
transaction); a token is larger than every token granted before it, forever; every
method that changes something is durable when it returns; a decision (grant, renew,
fenced write) is made inside one transaction, never by a read and a later write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from wakeful.core.locks import Acquired, Blocked, Check, KVEntry, LockRow, WaiterRow
from wakeful.core.resources import Mode, Owner, Resource

T = TypeVar("T")


class LockStore(Protocol):
    async def now(self) -> float:
        """The store's clock."""

    async def acquire(self, resource: Resource, mode: Mode, owner: Owner, *, process: str,
                      pid: int, lease_s: float, waiter_id: int | None) -> Acquired | Blocked:
        """Grant the lock (lapsed leases reaped first) and remember, beyond the lock's
        life, that ``owner`` was granted that token; or say who is in the way."""

    async def renew(self, token: int, owner: Owner, lease_s: float) -> LockRow:
        """Extend a live lock of ``owner``; StaleTokenError if it lapsed or is gone."""

    async def release(self, token: int, owner: Owner) -> tuple[LockRow | None, float]:
        """Delete the lock; return it (None if it was gone) and the store's time."""

    async def release_all(self, task_id: str) -> list[LockRow]:
        """A task ended: drop its locks and its grants."""

    async def grants_of(self, task_id: str) -> list[tuple[str, int]]:
        """(resource, token) of every lock the task was granted and still counts on."""

    async def fenced(self, token: int, task_id: str, write: Callable[[], T],
                     describe: str) -> T:
        """Run ``write`` in a transaction that first checks the lock is the task's and
        live; StaleTokenError (and no write) otherwise."""

    async def reap(self, waiter_ids: Sequence[int], keep_alive_s: float) -> list[LockRow]:
        """Remove lapsed leases and dead waits; keep these waits alive."""

    async def leave_line(self, waiter_id: int) -> None: ...

    async def join_line(self, resource: Resource, mode: Mode, owner: Owner, *, kind: str,
                        process: str, pid: int, keep_alive_s: float) -> int:
        """Take a place in line for ``resource``; returns the place's id."""

    async def forget_process(self, process: str) -> None:
        """Drop a stopping process's places in line."""

    async def check(self, resource: Resource, mode: Mode, owner: Owner, process: str,
                    waiter_id: int | None) -> Check:
        """The locks over ``resource`` and the waits ahead of ``waiter_id``."""

    async def get_lock(self, token: int) -> LockRow | None: ...

    async def locks_of(self, task_id: str) -> list[LockRow]: ...

    async def last_token(self) -> int: ...

    async def snapshot(self) -> tuple[float, list[LockRow], list[WaiterRow]]:
        """Every lock (lapsed ones included) and live wait, with the store's time."""

    async def recent_deadlocks(self, limit: int = 10) -> list[dict[str, Any]]: ...

    async def wait_cycle(self, task_id: str) -> list[str]:
        """The tasks of a cycle of waits through ``task_id`` across every process (its
        lock waits and live locks in the store), or [] when there is none."""

    async def kv_get(self, key: str) -> KVEntry | None: ...

    async def kv_set(self, key: str, value: object, updated_by: str,
                     fence: tuple[int, str] | None = None) -> KVEntry:
        """Set a shared value; with ``fence`` (token, task), only while that lock is the
        task's and live, checked in the write's own transaction."""

    async def kv_delete(self, key: str) -> bool: ...
