"""The live stream: every event as it happens, batched for browsers.

One WebSocket per client. A browser cannot set headers on a WebSocket, so it offers
the token as a subprotocol (``new WebSocket(url, ["wakeful", "bearer.TOKEN"])``) and
the URL, which browsers show in their console when a connection fails, never holds it;
other clients may still send ``?token=...``. A client that reconnects sends
``?after_id=N``, the last event id it saw: the events it missed are replayed from the
store first, then the live feed goes on without repeating any of them.

Events are sent in batches, at most one every ``interval_s``, so that a hundred agents
streaming replies at once cost a browser a few messages a second, not thousands.
Within a batch, streamed tokens are coalesced: one entry per task with the text of all
its tokens since the last batch. Delivery bookkeeping (``mail.delivered``, ``mail.acked``)
is not sent at all. A client that falls behind loses the oldest events
(the subscription is bounded) and is told how many, so it can reload what it shows.

Streamed tokens are most of what a busy team emits, and a page shows few of them (a
chat shows its agents', a task view its task's, the agent page and the overview none).
A client says which it wants with a message ``{"type": "tokens", "all": bool, "agents":
[...], "tasks": [...]}``, sent again whenever that changes; the others are left out
where they are emitted (they never enter its queue), so the server neither queues,
coalesces nor encodes them and the browser neither parses nor hands them round. A
client that says nothing gets all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from wakeful.core.encoding import to_json
from wakeful.core.records import Event
from wakeful.observe.events import EventLog, Subscription
from wakeful.server import views
from wakeful.server.identity import caller_for
from wakeful.server.schemas import error_body
from wakeful.store.base import Store

router = APIRouter(tags=["stream"])

SKIPPED = frozenset({"mail.delivered", "mail.acked"})
INTERVAL_S = 0.075
MAX_BATCH = 2000  # entries per batch; the rest waits for the next one
QUEUE_SIZE = 50_000
REPLAY_MAX = 5000  # events replayed on a resume; past that the client is told to reload
SUBPROTOCOL = "wakeful"
BEARER_PREFIX = "bearer."


def offered_token(socket: WebSocket) -> tuple[str | None, bool]:
    """The token a client presented, and whether it came as a subprotocol."""
    offered = [p.strip() for p in socket.headers.get("sec-websocket-protocol", "").split(",")]
    for protocol in offered:
        if protocol.startswith(BEARER_PREFIX):
            return protocol[len(BEARER_PREFIX):], True
    return socket.query_params.get("token"), False


def _after_id(socket: WebSocket) -> int:
    raw = socket.query_params.get("after_id", "0")
    return int(raw) if raw.isdigit() else 0


def _wanted(event: Event) -> bool:
    return event.type not in SKIPPED


class TokenInterest:
    """Whose streamed tokens (``model.token``) one client wants: all (the default),
    or those of the agents and tasks it named."""

    def __init__(self) -> None:
        self.all = True
        self.agents: frozenset[str] = frozenset()
        self.tasks: frozenset[str] = frozenset()

    def update(self, message: dict[str, Any]) -> None:
        """Take a ``tokens`` message; names that are not strings are ignored."""
        def names(key: str) -> frozenset[str]:
            value = message.get(key)
            return frozenset(v for v in value if isinstance(v, str)) if isinstance(
                value, list) else frozenset()
        self.all = message.get("all") is True
        self.agents, self.tasks = names("agents"), names("tasks")

    def wants(self, event: Event) -> bool:
        return self.all or event.agent in self.agents or event.task_id in self.tasks


def take_batch(first: Event, feed: Subscription, limit: int = MAX_BATCH, floor: int = 0
               ) -> list[dict[str, Any]]:
    """Drain what is queued (up to ``limit`` entries), tokens coalesced per task; events
    with an id at or below ``floor`` were replayed already and are skipped."""
    batch: list[dict[str, Any]] = []
    tokens: dict[str, dict[str, Any]] = {}  # task id -> its token entry in this batch
    event: Event | None = first
    while event is not None:
        if event.id is not None and event.id <= floor:
            pass
        elif event.type == "model.token":
            key = event.task_id or ""
            entry = tokens.get(key)
            count = event.data.get("count", 1)  # coalesced at the source already
            if entry is not None:
                entry["data"]["text"] += event.data.get("text", "")
                entry["data"]["count"] += count
            else:
                entry = views.event_view(event)
                entry["data"] = {"text": event.data.get("text", ""), "count": count}
                tokens[key] = entry
                batch.append(entry)
        else:
            batch.append(views.event_view(event))
        if len(batch) >= limit:
            break
        event = feed.get_nowait()
    return batch


class EventStream:
    """Pumps one client's batches; ends when the client goes away."""

    def __init__(self, events: EventLog, socket: WebSocket, interval_s: float) -> None:
        self.events = events
        self.socket = socket
        self.interval_s = interval_s
        self.tokens = TokenInterest()
        self.feed = events.subscribe(self._wanted, maxsize=QUEUE_SIZE)
        self.reported_drops = 0
        self.floor = 0  # the last event id replayed from the store

    def _wanted(self, event: Event) -> bool:
        """Called for every event emitted, while it is emitted: kept cheap."""
        if event.type == "model.token":
            return self.tokens.wants(event)
        return _wanted(event)

    async def replay(self, store: Store, after_id: int) -> None:
        """Send what was recorded after ``after_id`` (subscribed first: no gap; the live
        feed then skips what was replayed: no duplicate)."""
        await store.flush()
        found = await store.query_events(after_id=after_id, limit=REPLAY_MAX + 1)
        complete = len(found) <= REPLAY_MAX
        found = found[:REPLAY_MAX]
        self.floor = (found[-1].id or after_id) if found else after_id
        batch = [views.event_view(e) for e in found if _wanted(e) and e.type != "model.token"]
        await self.socket.send_text(to_json(
            {"type": "events", "events": batch, "dropped": 0 if complete else 1,
             "replayed": True}))

    async def run(self) -> None:
        pump = asyncio.create_task(self._pump(), name="stream:pump")
        listen = asyncio.create_task(self._listen(), name="stream:listen")
        try:
            await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.feed.close()
            for task in (pump, listen):
                task.cancel()
            await asyncio.gather(pump, listen, return_exceptions=True)

    async def _pump(self) -> None:
        while True:
            first = await self.feed.get()
            await asyncio.sleep(self.interval_s)  # let a batch gather
            if self.events.recording and self.events.store is not None:
                # Stored events get their ids now, so a client can resume after them.
                await self.events.store.flush()
            batch = take_batch(first, self.feed, floor=self.floor)
            if not batch and not self.feed.dropped - self.reported_drops:
                continue
            dropped = self.feed.dropped - self.reported_drops
            self.reported_drops = self.feed.dropped
            message = {"type": "events", "events": batch, "dropped": dropped}
            await self.socket.send_text(to_json(message))

    async def _listen(self) -> None:
        """Take the client's ``tokens`` messages (anything else is ignored); return when
        it disconnects."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await self.socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                self._heard(message.get("text"))

    def _heard(self, text: str | None) -> None:
        try:
            message = json.loads(text) if text else None
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "tokens":
            self.tokens.update(message)


@router.websocket("/api/stream")
async def stream(socket: WebSocket) -> None:
    app = socket.app
    presented, as_protocol = offered_token(socket)
    if await caller_for(app, presented) is None:
        await socket.send_denial_response(JSONResponse(
            error_body("missing or wrong API token: offer the subprotocol 'bearer.TOKEN' "
                       "or connect to /api/stream?token=TOKEN", 401), status_code=401))
        return
    await socket.accept(subprotocol=SUBPROTOCOL if as_protocol else None)
    runtime = app.state.runtime
    await runtime.store.flush()
    newest = await runtime.store.query_events(newest=True, limit=1)
    # last_event_id: a client that saw higher ids was talking to another store; it
    # starts counting again from here rather than skip what comes.
    await socket.send_text(to_json({"type": "hello", "run_id": runtime.run_id,
                                       "interval_ms": int(app.state.stream_interval_s * 1000),
                                       "last_event_id": newest[0].id if newest else 0}))
    client = EventStream(runtime.events, socket, app.state.stream_interval_s)
    after_id = _after_id(socket)
    if after_id:
        try:
            await client.replay(runtime.store, after_id)
        except Exception:
            client.feed.close()
            raise
    await client.run()
    with contextlib.suppress(Exception):
        await socket.close()
