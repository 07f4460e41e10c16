"""What a browser needs to keep another site out: Host checking and security headers.

**Host.** A page on ``evil.example`` can make its name resolve to 127.0.0.1 (DNS
rebinding) and then talk to this server as if it were same-origin. The token guards
the API, but the UI and whatever a future route forgets should not depend on that
alone, so a request is answered only when its ``Host`` is a name this server serves:
loopback names (``localhost``, ``*.localhost``), any IP address (a rebinding page
cannot make the browser send an IP as its Host), this machine's host name (the URL
printed when serving on 0.0.0.0), and the names the user configures
(``allowed_hosts``, or ``WAKEFUL_ALLOWED_HOSTS=name,*.suffix`` in the environment).
Anything else is a 403 in the API's error shape; a WebSocket is refused before it
is accepted.

**Headers.** Every HTTP answer carries a Content-Security-Policy that allows only the
server's own scripts, styles and connections (no inline script, no eval), forbids
framing (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``, against
clickjacking), ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy:
no-referrer`` (the login link carries the token in its fragment).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wakeful.server.schemas import error_body

ALLOWED_HOSTS_ENV = "WAKEFUL_ALLOWED_HOSTS"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def configured_hosts(given: Iterable[str] | None = None) -> tuple[str, ...]:
    """The host names allowed beyond the defaults: ``given``, else the environment."""
    if given is None:
        given = os.environ.get(ALLOWED_HOSTS_ENV, "").split(",")
    return tuple(h.strip().lower().rstrip(".") for h in given if h.strip())


def host_name(header: str) -> str:
    """``Host`` without its port: ``[::1]:80`` -> ``::1``, ``a.b:8765`` -> ``a.b``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    name, _, _ = header.partition(":")
    return name.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(header: str, extra: Iterable[str] = ()) -> bool:
    name = host_name(header)
    if not name:
        return False
    if name == "localhost" or name.endswith(".localhost") or _is_ip(name):
        return True
    if name == socket.gethostname().lower():  # the URL `serve --host 0.0.0.0` prints
        return True
    for pattern in extra:
        if name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


class Guard:
    """ASGI middleware: refuse unknown Host names; add the security headers."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None = None) -> None:
        self.app = app
        self.extra = configured_hosts(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                     if k == b"host"), "")
        if not host_allowed(host, self.extra):
            await self._refuse(scope, receive, send, host)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, host: str) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        shown = host[:100] or "(none)"
        body = JSONResponse(error_body(
            f"Host {shown!r} is not served here: open the UI by its loopback address "
            f"(http://127.0.0.1:PORT/) or an IP address, or allow the name with "
            f"{ALLOWED_HOSTS_ENV}=name[,*.domain]", 403), status_code=403)
        await send({"type": "http.response.start", "status": 403,
                    "headers": [*body.raw_headers, *HEADERS]})
        await send({"type": "http.response.body", "body": body.body})
