"""Opening PostgreSQL connections, and saying clearly why one could not be opened.

Every failure to connect becomes one line that names the host, port and database and
says what to do, because that line is all a person starting ``wakeful worker`` on a new
machine sees. Each connection also sets ``idle_in_transaction_session_timeout``, so a
worker frozen inside a transaction (SIGSTOP, a lost network) cannot hold row locks,
and with them other workers' takeovers, longer than that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from wakeful.errors import StoreError

IDLE_IN_TRANSACTION_MS = 5000


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    host: str
    port: int
    database: str
    user: str

    @property
    def where(self) -> str:
        return f"PostgreSQL at {self.host}:{self.port}, database {self.database!r}"


def parse_url(url: str) -> Target:
    """The parts of a ``postgresql://USER@HOST:PORT/DB`` URL (defaults as libpq's)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreError(f"store {url!r}: not a postgresql:// URL")
    try:
        port = parts.port or 5432
    except ValueError:
        raise StoreError(f"store {url!r}: the port is not a number") from None
    user = unquote(parts.username or os.environ.get("PGUSER") or os.environ.get("USER", ""))
    database = unquote(parts.path.lstrip("/")) or user
    return Target(url, parts.hostname or "localhost", port, database, user)


def explain(target: Target, exc: BaseException) -> StoreError:
    """One line for a failed connection: where, what happened, what to do."""
    where = target.where
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreError(f"{where}: the database does not exist; create it with "
                          f"`createdb -h {target.host} -p {target.port} {target.database}`")
    if isinstance(exc, asyncpg.InvalidPasswordError
                  | asyncpg.InvalidAuthorizationSpecificationError):
        return StoreError(f"{where}: user {target.user!r} was refused ({exc}); check the "
                          "user and password in the store URL")
    if isinstance(exc, OSError | TimeoutError):
        return StoreError(f"{where}: cannot reach the server ({exc.__class__.__name__}: "
                          f"{exc}); is PostgreSQL running and listening there?")
    return StoreError(f"{where}: cannot connect: {exc.__class__.__name__}: {exc}")


async def connect(target: Target, timeout: float = 10.0, **settings: Any) -> asyncpg.Connection:
    server_settings = {"idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
                       "application_name": "wakeful", **settings}
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            target.url.replace("postgres://", "postgresql://", 1), timeout=timeout,
            server_settings=server_settings)
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        raise explain(target, exc) from None
    return conn


async def _reset(conn: asyncpg.Connection) -> None:
    """Nothing to undo when a read gives its connection back: asyncpg rolls back a
    transaction a failed read left open before it calls this, and reads set no session
    state (no LISTEN, SET or session advisory lock: those have connections of their
    own). asyncpg's default reset query would cost one more round trip per read."""


async def create_pool(target: Target, size: int) -> asyncpg.Pool:
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            target.url.replace("postgres://", "postgresql://", 1), min_size=1, max_size=size,
            timeout=10.0, reset=_reset, server_settings={
                "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
                "application_name": "wakeful-read"})
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        raise explain(target, exc) from None
    return pool


def is_broken_connection(exc: BaseException) -> bool:
    """asyncpg's protocol was left mid-operation (seen after the server terminated the
    session during a transaction: asyncpg issue 1069): the connection refuses every
    statement before sending anything, so the statement never ran and may be retried
    on another connection; this one must be thrown away."""
    return isinstance(exc, asyncpg.exceptions._base.InternalClientError)


def is_connection_lost(exc: BaseException) -> bool:
    """A fault of the connection (or the server going away), not of the write."""
    return is_broken_connection(exc) or isinstance(
        exc, asyncpg.ConnectionDoesNotExistError | asyncpg.InterfaceError
        | asyncpg.AdminShutdownError | asyncpg.CannotConnectNowError
        | asyncpg.ConnectionFailureError | ConnectionError | OSError)
