"""Serving the app with uvicorn inside the runtime's own event loop.

The server is one asyncio task owned by :class:`WebServer` (started by ``start``,
stopped and awaited by ``stop``), so it shares the loop with the agents, adds no
threads, and never outlives the command that started it. uvicorn's own signal handling
is turned off: the CLI owns SIGINT/SIGTERM and stops the server, then the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from wakeful.core.scope import TaskScope
from wakeful.errors import WakefulError
from wakeful.runtime.runtime import Runtime
from wakeful.server.app import create_app
from wakeful.server.auth import is_loopback
from wakeful.server.mounts import check_exposure
from wakeful.server.stream import INTERVAL_S

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the command that owns the loop handles signals


class WebServer:
    """The API and UI for ``runtime`` on ``host:port`` (port 0: any free port)."""

    def __init__(self, runtime: Runtime, token: str, *, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, stream_interval_s: float = INTERVAL_S) -> None:
        if not token:
            raise WakefulError("the web server needs an API token")
        self.runtime = runtime
        self.token = token
        self.host = host
        self.app = create_app(runtime, token, stream_interval_s=stream_interval_s)
        check_exposure(runtime, host)  # public A2A agents: loopback only (issue 13)
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                                lifespan="off", access_log=False, ws="websockets-sansio",
                                timeout_graceful_shutdown=2, ws_ping_interval=20)
        self._server = _Server(config)
        self._scope = TaskScope("web")
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port = port

    @property
    def url(self) -> str:
        host = self.host if is_loopback(self.host) or self.host not in ("0.0.0.0", "::") \
            else socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    @property
    def login_url(self) -> str:
        return f"{self.url}#token={self.token}"

    def _bind(self) -> socket.socket:
        """Bind here, not in uvicorn: a taken port is a clear error, not an exit."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(2048)
        except OSError as exc:
            sock.close()
            raise WakefulError(f"cannot serve the web UI on {self.host}:{self.port}: "
                               f"{exc.strerror or exc} (choose another --port, or --port 0 "
                               "for any free one)") from None
        sock.setblocking(False)
        return sock

    async def start(self) -> None:
        """Bind and start serving; raises a clear error if the address is taken."""
        sock = self._bind()
        self.port = sock.getsockname()[1]
        self._socket = sock
        self._task = self._scope.spawn(self._server.serve(sockets=[sock]), name="web:uvicorn")
        while not self._server.started:
            if self._task.done():
                error = None if self._task.cancelled() else self._task.exception()
                await self._scope.aclose()
                sock.close()
                raise WakefulError(f"cannot serve the web UI on {self.host}:{self.port}: "
                                   f"{error or 'the server stopped at start'}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
        except TimeoutError:
            self._server.force_exit = True
        finally:
            await self._scope.aclose()
            self._task = None
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
