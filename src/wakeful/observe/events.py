"""The event log: one place where everything that happens is recorded.

Events are written to the store's append-only log (batched by its group commit, never
awaited on the hot path) and fanned out at once to live subscribers such as the CLI
status view. A slow subscriber never slows the runtime: its queue is bounded, and when
it is full the oldest events are dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from wakeful.core.context import CURRENT_TRACE
from wakeful.core.records import Event
from wakeful.store.base import Store

EventFilter = Callable[[Event], bool]
Listener = Callable[[Event], None]


class Subscription:
    """A bounded live feed of events; iterate it, and close it when done."""

    def __init__(self, log: EventLog, predicate: EventFilter | None, maxsize: int) -> None:
        self._log = log
        self._predicate = predicate
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        if self._predicate is not None and not self._predicate(event):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        self._log._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()


class EventLog:
    def __init__(self, store: Store | None = None, run_id: str | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self.listener_errors = 0
        self.persist = True

    def emit(
        self,
        type: str,
        *,
        agent: str | None = None,
        task_id: str | None = None,
        data: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        persist: bool = True,
    ) -> Event:
        """Record an event. ``persist=False`` is for high-rate transient events
        (streamed tokens) that live subscribers want but the log need not keep."""
        event = self.make(type, agent=agent, task_id=task_id, data=data,
                          correlation_id=correlation_id, causation_id=causation_id)
        if persist and self.recording:
            assert self.store is not None
            self.store.append_event(event)
        self.publish(event)
        return event

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` synchronously for every event (sinks: traces, logs).

        With no listeners there is no cost; each one should be quick and must not block.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    @property
    def recording(self) -> bool:
        """Are events written to the store?"""
        return self.persist and self.store is not None

    @property
    def listened(self) -> bool:
        """Is anyone subscribed to the live feed?"""
        return bool(self._subscribers)

    def make(
        self,
        type: str,
        *,
        agent: str | None = None,
        task_id: str | None = None,
        data: dict[str, Any] | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Event:
        """Build an event without recording it, for a writer that stores it in the same
        transaction as the change it describes and then :meth:`publish` es it. It joins
        the current trace unless told otherwise."""
        return Event(type=type, agent=agent, task_id=task_id, data=data or {},
                     run_id=self.run_id,
                     correlation_id=correlation_id or CURRENT_TRACE.get(),
                     causation_id=causation_id)

    def publish(self, event: Event) -> None:
        """Fan an event out to live subscribers and to listeners (sinks), without
        storing it (its writer stored it, or it is transient)."""
        for subscriber in tuple(self._subscribers):
            subscriber._offer(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken sink must never break the work it watches
                self.listener_errors += 1

    def subscribe(self, predicate: EventFilter | None = None, maxsize: int = 10_000
                  ) -> Subscription:
        subscription = Subscription(self, predicate, maxsize)
        self._subscribers.add(subscription)
        return subscription
