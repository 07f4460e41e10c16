"""What every request to the model server goes through, whatever its wire format:
picking the scripted reply, reading and authenticating the request, latency, hangs
and scripted errors, usage and tool-call ids (see :mod:`wakeful.testing.openai_server`).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wakeful.testing.connection import _SSE, _Client
from wakeful.testing.script import Received, Reply, Responder
from wakeful.testing.wire import _estimate, _prompt_tokens


class Handling:
    """The model server's scripting and shared request handling (its state is set up in
    :class:`~wakeful.testing.openai_server.ModelServer`)."""

    latency_s: float
    api_key: str | None
    default: Reply
    responder: Responder | None
    host: str
    port: int
    requests: list[Received]
    _queues: dict[str | None, deque[Reply]]
    _ids: itertools.count[int]

    # scripting -----------------------------------------------------------
    def script(self, *replies: Reply, model: str | None = None) -> None:
        """Queue replies, used in order: for ``model`` only, or for any model."""
        self._queues.setdefault(model, deque()).extend(replies)

    def pending(self, model: str | None = None) -> int:
        return len(self._queues.get(model, ()))

    def _next(self, body: dict[str, Any]) -> Reply:
        for key in (body.get("model"), None):
            queue = self._queues.get(key)
            if queue:
                return queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        return self.default

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def calls(self, path: str = "/v1/chat/completions") -> list[Received]:
        return [r for r in self.requests if r.path == path]

    # shared request handling ---------------------------------------------
    async def _begin(self, request: Request, *key_headers: str
                     ) -> tuple[Received, dict[str, Any]] | Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": {"message": "body is not JSON",
                                           "type": "invalid_request_error"}}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": {"message": "body must be a JSON object",
                                           "type": "invalid_request_error"}}, 400)
        record = Received(path=request.url.path, model=str(body.get("model", "")), body=body,
                          headers=dict(request.headers), started=time.monotonic(),
                          stream=bool(body.get("stream")))
        self.requests.append(record)
        if self.api_key is not None:
            given = {request.headers.get(h, "").removeprefix("Bearer ") for h in key_headers}
            if self.api_key not in given:
                record.status = 401
                record.finished = time.monotonic()
                return JSONResponse({"error": {"message": "invalid API key",
                                               "type": "authentication_error"}}, 401)
        return record, body

    async def _respond(self, request: Request, record: Received, reply: Reply,
                       error_body: Callable[[int, str], dict[str, Any]],
                       stream: Callable[[_Client], AsyncIterator[str]],
                       whole: Callable[[], dict[str, Any]]) -> Response:
        """Latency and scripted errors, then the reply, streamed or whole, in either
        wire format. The client connection is closed here unless a stream took it over."""
        client = _Client(request.receive)
        handed_over = False
        try:
            early = await self._prelude(record, reply, client, error_body)
            if early is not None:
                return early
            if record.stream:
                handed_over = True
                return _SSE(record, client, stream)
            record.finished = time.monotonic()
            return JSONResponse(whole())
        finally:
            if not handed_over:
                await client.close()

    async def _prelude(self, record: Received, reply: Reply, client: _Client,
                       error_body: Callable[[int, str], dict[str, Any]]) -> Response | None:
        """Latency, hangs and scripted errors: what happens before a reply starts."""
        latency = self.latency_s if reply.latency_s is None else reply.latency_s
        alive = await client.pause(latency)
        if alive and reply.hang:
            await client.gone.wait()
            alive = False
        if not alive:
            record.disconnected = True
            record.finished = time.monotonic()
            return Response(status_code=499)
        if reply.status != 200:
            record.status = reply.status
            record.finished = time.monotonic()
            headers = {}
            if reply.retry_after is not None:
                headers["Retry-After"] = f"{reply.retry_after:g}"
            return JSONResponse(error_body(reply.status, reply.error), reply.status,
                                headers=headers)
        record.status = 200
        return None

    def _usage(self, body: dict[str, Any], reply: Reply) -> tuple[int, int]:
        if reply.usage is not None:
            return reply.usage
        completion = _estimate(reply.text or "") + sum(
            4 + _estimate(c.arguments) for c in reply.tool_calls)
        return _prompt_tokens(body), completion

    def _call_ids(self, reply: Reply) -> list[str]:
        return [c.id or f"call_{next(self._ids)}" for c in reply.tool_calls]

    async def _paced(self, chunks: list[str], reply: Reply, client: _Client
                     ) -> AsyncIterator[str]:
        for number, item in enumerate(chunks):
            if reply.hang_after_chunks is not None and number >= reply.hang_after_chunks:
                await client.gone.wait()
                return
            if number and reply.chunk_delay_s and not await client.pause(reply.chunk_delay_s):
                return
            yield item
