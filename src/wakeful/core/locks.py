"""Plain records of the resource layer as the store keeps them."""

from __future__ import annotations

from dataclasses import dataclass

from wakeful.core.resources import Mode, Owner


@dataclass(frozen=True, slots=True)
class LockRow:
    """A granted explicit lock. ``token`` is its fencing token: every grant gets a
    larger one than any grant before it, so a write can be told apart from a late write
    by a holder whose lease has lapsed."""

    token: int
    resource: str
    mode: Mode
    owner: Owner
    process: str  # which runtime instance granted it
    pid: int
    acquired_at: float
    renewed_at: float
    expires_at: float

    def live(self, now: float) -> bool:
        return self.expires_at > now


@dataclass(frozen=True, slots=True)
class WaiterRow:
    """A task waiting for a resource. Rows of a live runtime are kept fresh
    (``alive_until``); those of a dead one lapse and are ignored."""

    id: int
    resource: str
    mode: Mode
    kind: str
    owner: Owner
    process: str
    pid: int
    since: float
    alive_until: float


@dataclass(frozen=True, slots=True)
class Acquired:
    lock: LockRow
    already_held: bool
    expired: list[LockRow]  # leases found lapsed (and removed) on the way


@dataclass(frozen=True, slots=True)
class Blocked:
    holders: list[LockRow]  # others' live locks in the way
    queued: list[WaiterRow]  # others' waits, from other runtimes, ahead in line
    expired: list[LockRow]
    now: float


@dataclass(frozen=True, slots=True)
class Check:
    """What the store says about a resource, for an auto-pause operation."""

    now: float
    locks: list[LockRow]  # every lock overlapping it, lapsed ones included
    queued: list[WaiterRow]  # others' conflicting waits, from other runtimes, ahead in line


@dataclass(frozen=True, slots=True)
class KVEntry:
    key: str
    value: object
    version: int
    updated_at: float
    updated_by: str | None
