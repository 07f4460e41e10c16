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
import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wakeful.testing.chat_completions import OpenAIChat
from wakeful.testing.messages_api import AnthropicMessages
from wakeful.testing.script import Received, Reply, Responder, tool_steps


class ModelServer(OpenAIChat, AnthropicMessages):
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
