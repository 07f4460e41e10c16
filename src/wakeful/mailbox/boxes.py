"""The in-memory side of delivery: each mailbox's open mail, its waiters, lease expiry.

Why in memory: a reader waiting for mail must wake the moment matching mail is
committed, without querying the store in a loop. So the mailbox keeps every open
delivery here (loaded from the store at start) and hands new mail straight to a
waiting reader whose filter matches; the store only records what happened.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wakeful.core.mail import MailFilter
from wakeful.core.mail_records import Delivery

Key = tuple[str, str]


@dataclass(slots=True, eq=False)
class Waiter:
    """A reader blocked until mail for one of its mailboxes matches its filter."""

    reader: str
    owners: tuple[str, ...]
    filter: MailFilter | None
    future: asyncio.Future[Delivery]


@dataclass(slots=True, eq=False)
class Box:
    """One mailbox (an agent, a task, a person): visible mail in delivery order, mail
    handed out and not yet acknowledged, and the readers waiting on it."""

    visible: dict[Delivery, None] = field(default_factory=dict)  # ordered by Delivery.order
    leased: dict[Delivery, None] = field(default_factory=dict)
    waiters: dict[Waiter, None] = field(default_factory=dict)
    unsorted: bool = False  # a redelivered mail went back behind later ones

    def in_order(self) -> dict[Delivery, None]:
        if self.unsorted:
            self.visible = dict.fromkeys(sorted(self.visible, key=lambda d: d.order))
            self.unsorted = False
        return self.visible

    def idle(self) -> bool:
        return not (self.visible or self.leased or self.waiters)


class LeaseClock:
    """Calls ``expire(delivery)`` when a lease runs out.

    Every lease lasts the same visibility timeout, so leases expire in the order they
    were granted: a deque, not a heap, and one timer armed for the oldest. Entries of
    leases that ended early (acknowledged) are skipped when they come up, and dropped
    in bulk when they pile up.
    """

    def __init__(self, expire: Callable[[Delivery], None]) -> None:
        self._expire = expire
        self._leases: deque[tuple[float, Delivery]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def add(self, until: float, delivery: Delivery, live: int) -> None:
        leases = self._leases
        leases.append((until, delivery))
        if len(leases) > 4 * live + 1024:
            self._leases = deque((u, d) for u, d in leases if d.lease_until == u)
        if self._timer is None and not self._closed:
            self._arm(until)

    def _arm(self, until: float) -> None:
        delay = max(0.0, until - time.time())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        leases = self._leases
        while leases and leases[0][0] <= now:
            until, delivery = leases.popleft()
            if delivery.lease_until == until:
                self._expire(delivery)
        if leases and not self._closed:
            self._arm(leases[0][0])

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
