"""The live stream: every event as it happens, batched for browsers.

One WebSocket per client (``/api/stream?token=...``; a browser cannot set headers on a
WebSocket). Events are sent in batches, at most one every ``interval_s``, so that a
hundred agents streaming replies at once cost a browser a few messages a second, not
thousands. Within a batch, streamed tokens are coalesced: one entry per task with the
text of all its tokens since the last batch. Delivery bookkeeping (``mail.delivered``,
``mail.acked``) is not sent at all. A client that falls behind loses the oldest events
(the subscription is bounded) and is told how many, so it can reload what it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from wakeful.core.records import Event
from wakeful.observe.events import EventLog, Subscription
from wakeful.server import views
from wakeful.server.auth import token_matches
from wakeful.server.schemas import error_body

router = APIRouter(tags=["stream"])

SKIPPED = frozenset({"mail.delivered", "mail.acked"})
INTERVAL_S = 0.075
MAX_BATCH = 2000  # entries per batch; the rest waits for the next one
QUEUE_SIZE = 50_000


def _wanted(event: Event) -> bool:
    return event.type not in SKIPPED


def take_batch(first: Event, feed: Subscription, limit: int = MAX_BATCH
               ) -> list[dict[str, Any]]:
    """Drain what is queued (up to ``limit`` entries), tokens coalesced per task."""
    batch: list[dict[str, Any]] = []
    tokens: dict[str, dict[str, Any]] = {}  # task id -> its token entry in this batch
    event: Event | None = first
    while event is not None:
        if event.type == "model.token":
            key = event.task_id or ""
            entry = tokens.get(key)
            if entry is not None:
                entry["data"]["text"] += event.data.get("text", "")
                entry["data"]["count"] += 1
            else:
                entry = views.event_view(event)
                entry["data"] = {"text": event.data.get("text", ""), "count": 1}
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
        self.socket = socket
        self.interval_s = interval_s
        self.feed = events.subscribe(_wanted, maxsize=QUEUE_SIZE)
        self.reported_drops = 0

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
            batch = take_batch(first, self.feed)
            dropped = self.feed.dropped - self.reported_drops
            self.reported_drops = self.feed.dropped
            message = {"type": "events", "events": batch, "dropped": dropped}
            await self.socket.send_text(json.dumps(message, default=str))

    async def _listen(self) -> None:
        """Return when the client disconnects (clients send nothing else we need)."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await self.socket.receive()
                if message["type"] == "websocket.disconnect":
                    return


@router.websocket("/api/stream")
async def stream(socket: WebSocket) -> None:
    app = socket.app
    if not token_matches(app.state.token, socket.query_params.get("token")):
        await socket.send_denial_response(JSONResponse(
            error_body("missing or wrong API token: connect to /api/stream?token=TOKEN", 401),
            status_code=401))
        return
    await socket.accept()
    runtime = app.state.runtime
    await socket.send_text(json.dumps({"type": "hello", "run_id": runtime.run_id,
                                       "interval_ms": int(app.state.stream_interval_s * 1000)}))
    await EventStream(runtime.events, socket, app.state.stream_interval_s).run()
    with contextlib.suppress(Exception):
        await socket.close()
