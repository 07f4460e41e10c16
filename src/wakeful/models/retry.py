"""Which provider failures are worth another try, and how long to wait before it.

Wakeful runs its own retry loop instead of the SDKs' built-in one (they are created
with ``max_retries=0``) so that every retry is a recorded ``model.retry`` event, a
429's ``Retry-After`` pauses every agent using the provider and not only the caller,
the same policy applies to the OpenAI and Anthropic SDKs, and a stream that breaks
half-way is retried like any other call.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_STATUS_TEXT = {400: "bad request", 401: "authentication failed", 403: "permission denied",
                404: "not found", 408: "request timeout", 409: "conflict",
                413: "request too large", 422: "unprocessable request",
                429: "rate limited", 500: "server error", 502: "bad gateway",
                503: "service unavailable", 504: "gateway timeout", 529: "overloaded"}


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, as the retry loop sees it."""

    description: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None
    # The server closed the connection before answering: typically a kept-alive
    # connection it had already closed. Retried once at once, outside max_retries.
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds before retry number ``retry`` (1-based).

        A server's ``Retry-After`` wins when given; otherwise exponential backoff with
        "equal jitter" (half fixed, half random), so that many agents failing at once
        do not come back at once, while each still waits a meaningful minimum.
        """
        if retry_after is not None:
            return max(0.0, float(retry_after))
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (retry - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return float(raw_ms) / 1000
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first (the SDKs wrap the real cause)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


_DROPPED = ("ServerDisconnectedError", "RemoteProtocolError")
_CONNECT_FAILED = ("ClientConnectorError", "ClientConnectorDNSError", "ConnectError")


def _network_failure(chain: list[BaseException]) -> Failure | None:
    """A refused or dropped connection, found anywhere in the chain.

    The SDKs' aiohttp transport reports every network error as a *timeout*
    (``APITimeoutError`` over ``ConnectTimeout``), so the cause, not the outer type,
    says what happened.
    """
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return Failure(f"connection refused: nothing is listening there "
                           f"(is the server running?) ({cause})", True)
    for cause in chain:
        name = type(cause).__name__
        if isinstance(cause, ConnectionResetError | BrokenPipeError) or (
                name in _DROPPED and "disconnect" in str(cause).lower()):
            return Failure(f"the server closed the connection without answering "
                           f"({name}: {cause})", True, dropped=True)
    for cause in chain:
        name = type(cause).__name__
        if name in _CONNECT_FAILED:
            return Failure(f"could not connect ({name}: {cause})", True)
    return None


def classify(exc: BaseException, timeout_s: float) -> Failure:
    """Turn an SDK or network exception into a :class:`Failure`.

    Both official SDKs raise exceptions with ``status_code``, ``response`` and
    ``message`` (status errors), or named ``*TimeoutError`` / ``*ConnectionError``
    types, so one function serves both without importing either.
    """
    chain = _chain(exc)
    network = _network_failure(chain)
    if network is not None:
        return network
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "APITimeoutError":
        return Failure(f"no response within {timeout_s:g} s (timeout_s)", True)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        response = getattr(exc, "response", None)
        retry_after = parse_retry_after(getattr(response, "headers", None))
        body = getattr(exc, "body", None)
        message = _server_message(body) or getattr(exc, "message", "") or str(exc)
        what = _STATUS_TEXT.get(status, "error")
        return Failure(f"HTTP {status} {what}: {message}",
                       status in RETRYABLE_STATUS or status >= 500, status, retry_after)
    if type(exc).__name__ == "APIConnectionError" or isinstance(exc, ConnectionError | OSError):
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        return Failure(f"connection failed{detail}", True)
    return Failure(f"{type(exc).__name__}: {exc}", False)


def _server_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return None
