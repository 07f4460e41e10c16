"""The event log: one place where everything that happens is recorded.

Events are written to the store's append-only log (batched by its group commit, never
awaited on the hot path) and fanned out at once to live subscribers such as the CLI
status view. A slow subscriber never slows the runtime: its queue is bounded, and when
it is full the oldest events are dropped and counted.

Streamed tokens (``model.token``, transient) are coalesced at the source: a task's
tokens within ``token_interval_s`` go out as one event whose ``text`` is theirs joined
and whose ``count`` says how many they were. A hundred agents streaming emit thousands
of tokens a second; one event each cost every subscriber and listener its share (and
the web server's CPU is what the browser beside it waits for). A task's pending tokens
always go out before any other event of that task, so per task the order holds.
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
TOKEN = "model.token"
TOKEN_INTERVAL_S = 0.05


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
        self.token_interval_s = TOKEN_INTERVAL_S  # 0: every token is its own event
        self._tokens: dict[str, Event] = {}  # task id -> its coalesced tokens, unsent
        self._token_timer: asyncio.TimerHandle | None = None
        self._token_loop: asyncio.AbstractEventLoop | None = None  # the timer's

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
        (streamed tokens) that live subscribers want but the log need not keep; streamed
        tokens are coalesced per task (see the module's docstring)."""
        if type == TOKEN and not persist and task_id is not None:
            pending = self._tokens.get(task_id)
            if pending is not None:
                pending.data["text"] += (data or {}).get("text", "")
                pending.data["count"] += 1
                return pending
            event = self.make(type, agent=agent, task_id=task_id,
                              data={"text": (data or {}).get("text", ""), "count": 1},
                              correlation_id=correlation_id, causation_id=causation_id)
            if self._hold(task_id, event):
                return event
            self.publish(event)
            return event
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

    def _hold(self, task_id: str, event: Event) -> bool:
        """Keep a task's first token to send with those that follow within the
        interval; False when it must go out now (no event loop, or coalescing off)."""
        if self.token_interval_s <= 0 or not (self._subscribers or self._listeners):
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._token_loop is not loop:  # a timer set on a loop that has ended
            self.flush_tokens()
        if self._token_timer is None:
            self._token_timer = loop.call_later(self.token_interval_s, self.flush_tokens)
            self._token_loop = loop
        self._tokens[task_id] = event
        return True

    def flush_tokens(self) -> None:
        """Send every task's pending tokens now."""
        if self._token_timer is not None:
            self._token_timer.cancel()
            self._token_timer = None
        pending, self._tokens = self._tokens, {}
        for event in pending.values():
            self._fan_out(event)

    def publish(self, event: Event) -> None:
        """Fan an event out to live subscribers and to listeners (sinks), without
        storing it (its writer stored it, or it is transient). The task's streamed
        tokens still held go out first."""
        if self._tokens and event.task_id is not None:
            tokens = self._tokens.pop(event.task_id, None)
            if tokens is not None:
                self._fan_out(tokens)
        self._fan_out(event)

    def _fan_out(self, event: Event) -> None:
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
