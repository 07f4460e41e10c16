"""Every failure the API can answer with, as one JSON shape: ``{"error", "status"}``.

Errors people cause get a status that says what kind of mistake it was and a message
that says where: 401 (token), 403 (not a member), 404 (unknown id), 409 (not allowed
in this state), 413 (too big), 422 (malformed, with the field). Nothing a request
does can stop the runtime: whatever escapes is a 500 with one line, and the runtime
keeps running.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wakeful.approvals.decisions import AlreadyDecidedError, UnknownApprovalError
from wakeful.errors import (
    AccessDeniedError,
    IllegalTransitionError,
    MailAccessError,
    MailTooLargeError,
    UnknownAgentError,
    UnknownTaskError,
    WakefulError,
)
from wakeful.runtime.intervention import UndoError
from wakeful.server.schemas import error_body

log = structlog.get_logger("wakeful.server")


class NotFound(WakefulError):
    """An id the runtime does not know (a mail, a channel)."""


class TooLarge(WakefulError):
    """Something over a size limit that the mailbox does not check itself."""


def status_of(error: WakefulError) -> int:
    if isinstance(error, UnknownAgentError | UnknownTaskError | NotFound
                  | UnknownApprovalError):
        return 404
    if isinstance(error, MailAccessError | AccessDeniedError):
        return 403
    if isinstance(error, AlreadyDecidedError):
        return 409
    if isinstance(error, MailTooLargeError | TooLarge):
        return 413
    if isinstance(error, IllegalTransitionError | UndoError):
        return 409
    return 422


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path"):
        where = parts[0]
        rest = ".".join(parts[1:])
        return f"{where}.{rest}" if rest else where
    return ".".join(parts) or "(request)"


def install(app: FastAPI) -> None:
    @app.exception_handler(WakefulError)
    async def wakeful_error(request: Request, exc: WakefulError) -> JSONResponse:
        status = status_of(exc)
        return JSONResponse(error_body(str(exc), status), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        for item in exc.errors():
            message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            fields.append({"field": _field(item.get("loc", ())), "message": message,
                           "type": item.get("type")})
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid"
        return JSONResponse(error_body(f"malformed request: {summary}", 422, fields=fields),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's "error parsing the body"
            return _malformed("body", "the JSON is nested too deeply to read; send a "
                              "flatter document")
        return JSONResponse(error_body(str(exc.detail), exc.status_code),
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(OverflowError)
    async def overflow(request: Request, exc: OverflowError) -> JSONResponse:
        """A whole number the store cannot hold (SQLite: 64 bits) is the caller's mistake;
        name the parameters that hold one."""
        params = [("query", k, v) for k, v in request.query_params.multi_items()]
        params += [("path", k, str(v)) for k, v in request.path_params.items()]
        where = [f"{kind}.{key}" for kind, key, value in params if _out_of_range(value)]
        return _malformed(", ".join(where) or "(request)",
                          f"a number out of range: the store holds whole numbers from "
                          f"{-2**63} to {2**63 - 1}")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("API request failed", path=request.url.path, error=repr(exc))
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}", 500),
                            status_code=500)


def _out_of_range(value: str) -> bool:
    text = value.strip().lstrip("+-")
    if not text.isdigit():
        return False
    return len(text) > 19 or not -2**63 <= int(value) < 2**63


def _malformed(field: str, message: str) -> JSONResponse:
    fields = [{"field": field, "message": message, "type": "value_error"}]
    return JSONResponse(error_body(f"malformed request: {field}: {message}", 422,
                                   fields=fields), status_code=422)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before they are read whole
    (a declared Content-Length is checked up front; a chunked body as it arrives)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._refuse(send, declared)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # FastAPI passes an HTTPException from here on
                    raise HTTPException(413, f"request body too large: over {self.limit:,} "
                                        f"bytes (the limit is {self.limit:,})")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send, size: int) -> None:
        body = JSONResponse(error_body(
            f"request body too large: {size:,} bytes; the limit is {self.limit:,}", 413),
            status_code=413)
        await send({"type": "http.response.start", "status": 413,
                    "headers": body.raw_headers})
        await send({"type": "http.response.body", "body": body.body})
