"""A local model server speaking the real OpenAI (and Anthropic) wire protocol.

Why it exists: Wakeful's providers must be tested as they run in production, through
the official SDKs over real HTTP, against the failures real providers produce (429 with
``Retry-After``, 500s, hangs, streams that stop half-way, malformed tool calls). A paid
API cannot be scripted to misbehave on cue; this server can. It is a real Starlette app
on a real uvicorn socket bound to 127.0.0.1, so nothing in the SDK is patched.

What it speaks:

* ``POST /v1/chat/completions`` (OpenAI): JSON replies, or SSE when ``stream`` is true,
  with text deltas, tool-call deltas assembled by ``index`` (id and name in the first
  delta, the arguments in pieces), a usage chunk when ``stream_options.include_usage``
  is set, and ``data: [DONE]``. Requests are checked as OpenAI checks them (every tool
  message answers a tool call of the assistant message before it, an assistant message
  has content or tool calls), and a bad request gets a 400 naming the problem.
* ``POST /v1/messages`` (Anthropic): the same replies as Messages API JSON or its
  named SSE events (``message_start`` ... ``message_stop``).
* ``GET /v1/models``.

Behaviour is scripted per request: :meth:`ModelServer.script` queues :class:`Reply`
objects (per model name, or for any model), otherwise ``responder`` decides, otherwise
``default`` answers. Every request is recorded as a :class:`Received` (body, timing,
whether the client went away), so tests can assert what the client really sent.

Run it on its own (benchmarks run it in a separate process so that it does not share
the client's interpreter)::

    python -m wakeful.testing --latency-ms 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """A tool call the server will send. ``arguments`` is sent verbatim: it may be
    deliberately malformed JSON."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """How the server answers one request."""

    text: str | None = "ok"
    tool_calls: Sequence[FakeToolCall] = ()
    status: int = 200
    error: str = "scripted failure"
    retry_after: float | None = None  # seconds, sent as ``Retry-After`` with the status
    latency_s: float | None = None  # before the first byte; None: the server's default
    hang: bool = False  # never answer; wait until the client goes away
    hang_after_chunks: int | None = None  # streaming: send this many chunks, then hang
    chunk_delay_s: float = 0.0  # streaming: pause between chunks
    usage: tuple[int, int] | None = None  # (prompt, completion) tokens; None: estimated
    finish_reason: str | None = None  # None: "tool_calls" if there are calls, else "stop"

    @staticmethod
    def call(name: str, arguments: dict[str, Any] | str = "{}", text: str | None = None,
             **kwargs: Any) -> Reply:
        """A reply with one tool call (``arguments`` as a dict, or raw text)."""
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return Reply(text=text, tool_calls=(FakeToolCall(name, raw),), **kwargs)


@dataclass(slots=True)
class Received:
    """One request as the server saw it."""

    path: str
    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    started: float  # time.monotonic() when the body had been read
    stream: bool = False
    status: int = 0
    finished: float | None = None  # when the last byte was sent
    disconnected: bool = False  # the client went away before the reply was complete


Responder = Callable[[dict[str, Any]], Reply]


def tool_steps(steps: int, tool: str = "note", reply: str = "done") -> Responder:
    """A model that calls ``tool`` (with new arguments each time, so no loop guard
    trips) until the conversation holds ``steps`` tool results, then answers ``reply``."""

    def respond(body: dict[str, Any]) -> Reply:
        done = sum(1 for m in body.get("messages") or () if m.get("role") == "tool")
        if done < steps:
            return Reply.call(tool, {"text": f"step {done}"})
        return Reply(text=reply)

    return respond


class _BadRequest(Exception):
    pass


def _estimate(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += len(json.dumps(content))
    total += len(str(body.get("system") or ""))
    return max(1, total // 4)


def _check_openai(body: dict[str, Any]) -> None:
    """The checks OpenAI makes that a client is most likely to get wrong."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _BadRequest("'model' is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty array")
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise _BadRequest(f"messages[{index}]: invalid role {role!r}")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                raise _BadRequest(f"messages[{index}]: tool message answers {call_id!r}, which "
                                  "is not a tool call of the preceding assistant message")
            continue
        open_calls = set()
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if message.get("content") is None and not calls:
                raise _BadRequest(f"messages[{index}]: an assistant message needs 'content' "
                                  "or 'tool_calls'")
            open_calls = {c["id"] for c in calls}
        elif not isinstance(message.get("content"), str | list):
            raise _BadRequest(f"messages[{index}]: 'content' is required for role {role!r}")
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not tools):
        raise _BadRequest("'tools' must be a non-empty array when given")


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


def _pieces(text: str, size: int = 7) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


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


class ModelServer:
    """The scripted server; start it with :meth:`start` (a background thread) or use
    it as a context manager."""

    def __init__(self, *, latency_s: float = 0.0, api_key: str | None = None,
                 default: Reply | None = None, host: str = "127.0.0.1") -> None:
        self.latency_s = latency_s
        self.api_key = api_key
        self.default = default or Reply()
        self.responder: Responder | None = None
        self.host = host
        self.port = 0
        self.requests: list[Received] = []
        self._queues: dict[str | None, deque[Reply]] = {}
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

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

    # OpenAI ------------------------------------------------------------
    async def _chat(self, request: Request) -> Response:
        begun = await self._begin(request, "authorization")
        if isinstance(begun, Response):
            return begun
        record, body = begun
        try:
            _check_openai(body)
        except _BadRequest as exc:
            record.status = 400
            record.finished = time.monotonic()
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error",
                                           "param": None, "code": None}}, 400)
        reply = self._next(body)
        return await self._respond(
            request, record, reply,
            lambda status, message: {"error": {
                "message": message, "param": None, "code": None,
                "type": "rate_limit_exceeded" if status == 429 else "server_error"}},
            lambda c: self._chat_stream(body, reply, c),
            lambda: self._chat_body(body, reply))

    def _finish_reason(self, reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _chat_body(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for call_id, c in zip(self._call_ids(reply), reply.tool_calls, strict=True)]
        prompt, completion = self._usage(body, reply)
        return {
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion",
            "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": self._finish_reason(reply)}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }

    async def _chat_stream(self, body: dict[str, Any], reply: Reply, client: _Client
                           ) -> AsyncIterator[str]:
        base = {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body["model"]}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return "data: " + json.dumps({**base, "choices": [choice]}) + "\n\n"

        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"content": word}) for word in _words(reply.text or "")]
        for index, (call_id, call) in enumerate(
                zip(self._call_ids(reply), reply.tool_calls, strict=True)):
            chunks.append(chunk({"tool_calls": [{"index": index, "id": call_id,
                                                 "type": "function", "function": {
                                                     "name": call.name, "arguments": ""}}]}))
            chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
                       for p in _pieces(call.arguments)]
        chunks.append(chunk({}, self._finish_reason(reply)))
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt, completion = self._usage(body, reply)
            chunks.append("data: " + json.dumps({**base, "choices": [], "usage": {
                "prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}}) + "\n\n")
        chunks.append("data: [DONE]\n\n")
        async for item in self._paced(chunks, reply, client):
            yield item

    async def _paced(self, chunks: list[str], reply: Reply, client: _Client
                     ) -> AsyncIterator[str]:
        for number, item in enumerate(chunks):
            if reply.hang_after_chunks is not None and number >= reply.hang_after_chunks:
                await client.gone.wait()
                return
            if number and reply.chunk_delay_s and not await client.pause(reply.chunk_delay_s):
                return
            yield item

    # Anthropic ---------------------------------------------------------
    async def _messages(self, request: Request) -> Response:
        # Anthropic's SDK sends ``x-api-key`` or, in recent versions, a bearer token.
        begun = await self._begin(request, "x-api-key", "authorization")
        if isinstance(begun, Response):
            return begun
        record, body = begun
        if not isinstance(body.get("max_tokens"), int) or not body.get("messages"):
            record.status = 400
            return JSONResponse({"type": "error", "error": {
                "type": "invalid_request_error",
                "message": "'max_tokens' and 'messages' are required"}}, 400)
        reply = self._next(body)
        return await self._respond(
            request, record, reply,
            lambda status, message: {"type": "error", "error": {
                "type": "rate_limit_error" if status == 429 else "api_error",
                "message": message}},
            lambda c: self._messages_stream(body, reply, c),
            lambda: self._messages_body(body, reply))

    def _stop_reason(self, reply: Reply) -> str:
        if reply.finish_reason is not None:
            return {"stop": "end_turn", "length": "max_tokens"}.get(reply.finish_reason,
                                                                      reply.finish_reason)
        return "tool_use" if reply.tool_calls else "end_turn"

    def _messages_body(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for call_id, call in zip(self._call_ids(reply), reply.tool_calls, strict=True):
            try:
                arguments = json.loads(call.arguments)
            except ValueError:
                arguments = {"_unparsed": call.arguments}
            content.append({"type": "tool_use", "id": call_id, "name": call.name,
                            "input": arguments})
        prompt, completion = self._usage(body, reply)
        return {"id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant",
                "model": body["model"], "content": content,
                "stop_reason": self._stop_reason(reply), "stop_sequence": None,
                "usage": {"input_tokens": prompt, "output_tokens": completion}}

    async def _messages_stream(self, body: dict[str, Any], reply: Reply, client: _Client
                               ) -> AsyncIterator[str]:
        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        prompt, completion = self._usage(body, reply)
        events = [event("message_start", {"message": {
            "id": f"msg_{next(self._ids)}", "type": "message", "role": "assistant",
            "model": body["model"], "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": 1}}})]
        index = 0
        if reply.text:
            events.append(event("content_block_start", {
                "index": index, "content_block": {"type": "text", "text": ""}}))
            events += [event("content_block_delta", {"index": index, "delta": {
                "type": "text_delta", "text": w}}) for w in _words(reply.text)]
            events.append(event("content_block_stop", {"index": index}))
            index += 1
        for call_id, call in zip(self._call_ids(reply), reply.tool_calls, strict=True):
            events.append(event("content_block_start", {"index": index, "content_block": {
                "type": "tool_use", "id": call_id, "name": call.name, "input": {}}}))
            events += [event("content_block_delta", {"index": index, "delta": {
                "type": "input_json_delta", "partial_json": p}})
                for p in _pieces(call.arguments)]
            events.append(event("content_block_stop", {"index": index}))
            index += 1
        events.append(event("message_delta", {
            "delta": {"stop_reason": self._stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": completion}}))
        events.append(event("message_stop", {}))
        async for item in self._paced(events, reply, client):
            yield item

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": "test-model", "object": "model", "created": 0, "owned_by": "wakeful"}]})

    # running -------------------------------------------------------------
    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(self.app, log_level="warning", access_log=False,
                              lifespan="off", timeout_graceful_shutdown=2,
                              backlog=4096, timeout_keep_alive=30)

    def _listen(self) -> socket.socket:
        # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets
        # that say they are TCP, and without it every request after the first on a
        # kept-alive connection waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(4096)  # connections queue from now on, even before uvicorn accepts
        self.port = sock.getsockname()[1]
        return sock

    def start(self, timeout: float = 10.0) -> ModelServer:
        """Serve on a free loopback port from a background thread; return when ready."""
        if self._thread is not None:
            raise RuntimeError("the model server is already running")
        sock = self._listen()
        self._server = uvicorn.Server(self._config())
        # (uvicorn leaves signals alone when it runs outside the main thread.)
        server = self._server
        self._thread = threading.Thread(target=lambda: server.run(sockets=[sock]),
                                        name="wakeful-model-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the model server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._thread = None
        self._server = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def wait_for_requests(self, count: int, timeout: float = 10.0,
                                path: str = "/v1/chat/completions") -> list[Received]:
        """Poll (from the client's event loop) until ``count`` requests have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.calls(path)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the model server got {len(self.calls(path))} requests "
                                   f"on {path}, expected {count}")
            await asyncio.sleep(0.01)
        return self.calls(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible test server.")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--reply", default="ok", help="the text every request gets")
    parser.add_argument("--tool-steps", type=int, default=0, metavar="N",
                        help="call the 'note' tool until a conversation holds N results")
    args = parser.parse_args(argv)
    server = ModelServer(latency_s=args.latency_ms / 1000, default=Reply(text=args.reply))
    if args.tool_steps:
        server.responder = tool_steps(args.tool_steps, reply=args.reply)
    server.port = args.port
    sock = server._listen()
    print(f"listening on {server.base_url}", flush=True)
    uvicorn.Server(server._config()).run(sockets=[sock])


if __name__ == "__main__":
    main()
