"""The HTTP application: the JSON API, the live stream and the web UI, in one app.

``create_app(runtime, token)`` builds it for a runtime that is already started (or
about to be); it owns nothing and stops nothing, so the same runtime can be served,
tested over ASGI, or driven from the CLI at once. Every ``/api`` route needs the token;
the UI's static files do not (the login page has to load first). The token is the
project's (the admin's) or a person's own (see :mod:`wakeful.server.identity`).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from wakeful import __version__
from wakeful.runtime.runtime import Runtime
from wakeful.server import errors, security
from wakeful.server.identity import require_caller, viewers_read_only
from wakeful.server.mounts import mount_interop
from wakeful.server.routes import (
    agent_admin,
    agents,
    channels,
    controls,
    events,
    locks,
    mail,
    overview,
    people,
    search,
    tasks,
)
from wakeful.server.schemas import error_body
from wakeful.server.stream import INTERVAL_S
from wakeful.server.stream import router as stream_router

MAX_BODY_BYTES = 1024 * 1024  # bigger than any mail the default limits allow


def web_dir() -> Path:
    return Path(str(resources.files("wakeful") / "web"))


def create_app(runtime: Runtime, token: str, *, stream_interval_s: float = INTERVAL_S,
               max_body_bytes: int = MAX_BODY_BYTES,
               allowed_hosts: Iterable[str] | None = None) -> FastAPI:
    """``allowed_hosts``: Host names served beside loopback names and IP addresses
    (``*.suffix`` allowed); None reads ``WAKEFUL_ALLOWED_HOSTS`` (see
    :mod:`wakeful.server.security`)."""
    app = FastAPI(title="Wakeful", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None,
                  description="The API of a running Wakeful runtime: agents, tasks, mail, "
                              "channels, locks and events, and a live event stream at "
                              "/api/stream (WebSocket). Send 'Authorization: Bearer TOKEN'.")
    app.state.runtime = runtime
    app.state.token = token
    app.state.stream_interval_s = stream_interval_s
    errors.install(app)
    auth = [Depends(require_caller), Depends(viewers_read_only)]
    for module in (overview, agent_admin, agents, controls, tasks, mail, channels, locks,
                   events, search, people):
        app.include_router(module.router, dependencies=auth)
    app.include_router(stream_router)

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=auth)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False, dependencies=auth)
    async def unknown(rest: str, request: Request) -> JSONResponse:
        return JSONResponse(error_body(
            f"no such endpoint: {request.method} /api/{rest}", 404), status_code=404)

    if runtime is not None:  # None: an app built only for its OpenAPI schema
        mount_interop(app, runtime, token)  # /a2a and /mcp (see wakeful.server.interop)
    static = web_dir()

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static), name="static")
    app.add_middleware(errors.BodyLimit, limit=max_body_bytes)
    app.add_middleware(security.Guard, allowed_hosts=allowed_hosts)  # outermost
    return app
