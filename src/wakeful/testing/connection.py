"""One client connection of the model server: watching it so that pauses end when the
client leaves, and streaming server-sent events until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from wakeful.testing.script import Received


class _Client:
    """Watches one request's connection so that pauses end when the client leaves."""

    def __init__(self, receive: Receive) -> None:
        self.gone = asyncio.Event()
        self._watch = asyncio.ensure_future(self._watcher(receive))

    async def _watcher(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                return

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False if the client went away meanwhile."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        return not self.gone.is_set()

    async def close(self) -> None:
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch


class _SSE(Response):
    """Server-sent events from a generator, stopping when the client leaves."""

    def __init__(self, record: Received, client: _Client,
                 events: Callable[[_Client], AsyncIterator[str]]) -> None:
        # No Response.__init__: it would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                            (b"cache-control", b"no-cache")]
        self._record = record
        self._client = client
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            async for chunk in self._events(self._client):
                if self._client.gone.is_set():
                    break
                await send({"type": "http.response.body", "body": chunk.encode(),
                            "more_body": True})
            if not self._client.gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._record.disconnected = self._client.gone.is_set()
            self._record.finished = time.monotonic()
            await self._client.close()
