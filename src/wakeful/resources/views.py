"""What the resource manager answers with: a lock request's result, who uses a
resource, and the status view behind ``list_locks`` and ``wakeful locks``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from wakeful.core.locks import LockRow, WaiterRow
from wakeful.core.resources import Mode
from wakeful.resources.gate import Request


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
