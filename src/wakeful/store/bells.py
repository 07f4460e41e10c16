"""Doorbells: "something you may care about was committed; look again".

A doorbell carries no data. Whoever hears it reads the store (the store is the truth);
whoever does not hear it (a lost notification, a backend without notifications) reads
the store anyway on its next catch-up poll. So a bell can only make things faster,
never change what happens. Topics: ``tasks`` (a task was queued), ``commands`` (an
agent was asked to pause, stop...), ``mail`` (mail or a channel change was committed),
``locks`` (a lock was released), ``timers`` (a timer was added or changed), ``agents``
(an agent's definition or state changed).

Every store rings its own process's bells when its writes commit; a PostgreSQL store
also rings them when another process's commit sends a NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

TOPICS = ("tasks", "commands", "mail", "locks", "timers", "agents")


class Subscription:
    """A listener's view of some topics: :meth:`wait` returns when any of them rang
    since the last wait (or when the timeout passes)."""

    def __init__(self, topics: frozenset[str]) -> None:
        self.topics = topics
        self._rung = asyncio.Event()

    def ring(self) -> None:
        self._rung.set()

    async def wait(self, timeout: float | None) -> bool:
        """Wait for a ring; return whether one came (False: the timeout passed)."""
        rang = True
        if not self._rung.is_set():
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a
            # cancellation that arrives as the bell rings, and the cancelled listener
            # would go on looping (a runtime's stop then waited for it forever).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._rung.wait()
            rang = self._rung.is_set()
        self._rung.clear()
        return rang


class Bells:
    """The doorbells of one process."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscription]] = {}

    def subscribe(self, topics: Iterable[str]) -> Subscription:
        subscription = Subscription(frozenset(topics))
        for topic in subscription.topics:
            self._subscribers.setdefault(topic, []).append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        for topic in subscription.topics:
            with contextlib.suppress(ValueError):
                self._subscribers.get(topic, []).remove(subscription)

    def ring(self, topics: Iterable[str]) -> None:
        for topic in topics:
            for subscription in self._subscribers.get(topic, ()):
                subscription.ring()

    def ring_all(self) -> None:
        """After a lost notification connection: everyone looks again (catch-up)."""
        self.ring(list(self._subscribers))
