"""Who runs what, in the SQLite store: workers, agent leases, task claims, fencing.

Every decision is a conditional write that one transaction wins, never a read followed
by a write that is right only because SQLite lets one writer in at a time: an agent is
taken with a compare-and-set on its lease's epoch, a task run is claimed with
``state = 'queued'`` in the UPDATE's own WHERE clause, and a fenced write carries
``EXISTS (lease with this owner and epoch)`` in its WHERE clause. The store's clock is
this host's clock, read inside the transaction (all SQLite writers share the host).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Protocol

from wakeful.core.records import AgentGrant, Fence
from wakeful.errors import FenceError

FENCE_SQL = ("EXISTS (SELECT 1 FROM agent_leases WHERE agent = ? AND owner = ? "
             "AND epoch = ?)")


def fence_params(fence: Fence) -> list[Any]:
    return [fence.agent, fence.owner, fence.epoch]


def require_fence(conn: sqlite3.Connection, fence: Fence, what: str) -> None:
    """Raise FenceError (in the caller's transaction) unless ``fence`` still holds."""
    if not conn.execute("SELECT " + FENCE_SQL, fence_params(fence)).fetchone()[0]:
        raise FenceError(fence.agent, fence.owner, fence.epoch, what)


def check_fenced(cursor: sqlite3.Cursor, fence: Fence | None, what: str) -> bool:
    """After a fenced UPDATE: raise FenceError if the fence refused it."""
    if cursor.rowcount == 0 and fence is not None:
        require_fence(cursor.connection, fence, what)
        return False
    return cursor.rowcount > 0


def _requeue(conn: sqlite3.Connection, agent: str, now: float) -> tuple[str, ...]:
    """Put the tasks a previous owner left running or waiting back in the queue."""
    ids = tuple(r[0] for r in conn.execute(
        "SELECT id FROM tasks WHERE agent = ? AND state IN ('running', 'waiting') "
        "ORDER BY created_at, id", (agent,)))
    if ids:
        conn.execute("UPDATE tasks SET state = 'queued', owner = NULL, updated_at = ? "
                     "WHERE agent = ? AND state IN ('running', 'waiting')", (now, agent))
    return ids


class _Writes(Protocol):
    async def write(self, op: Callable[[sqlite3.Connection], Any]) -> Any: ...

    async def read(self, query: Callable[[sqlite3.Connection], Any]) -> Any: ...


class SQLiteLeases:
    """The ownership part of :class:`~wakeful.store.sqlite.SQLiteStore` (a mixin)."""

    async def heartbeat(self: _Writes, worker: str, pid: int, host: str, lease_s: float
                        ) -> int:
        """Record that ``worker`` is alive for ``lease_s`` more seconds; return how many
        workers are alive (itself included)."""
        def op(conn: sqlite3.Connection) -> int:
            now = time.time()
            conn.execute("INSERT INTO workers (id, pid, host, started_at, expires_at) "
                         "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                         "expires_at = excluded.expires_at", (worker, pid, host, now,
                                                              now + lease_s))
            conn.execute("DELETE FROM workers WHERE expires_at < ?", (now - 3600,))
            conn.execute("DELETE FROM mail_wakeups WHERE at < ?", (now - 3600,))
            return int(conn.execute("SELECT COUNT(*) FROM workers WHERE expires_at > ?",
                                    (now,)).fetchone()[0])

        result: int = await self.write(op)
        return result

    async def acquire_agents(self: _Writes, worker: str, agents: Sequence[str],
                             lease_s: float, limit: int) -> list[AgentGrant]:
        """Take up to ``limit`` of ``agents`` that no live worker owns (never owned,
        released, or lease lapsed), raising each one's epoch; in the same transaction,
        put back in the queue the tasks a previous owner left running or waiting."""
        def op(conn: sqlite3.Connection) -> list[AgentGrant]:
            now = time.time()
            granted: list[AgentGrant] = []
            for agent in agents:
                if len(granted) >= limit:
                    break
                row = conn.execute("SELECT owner, epoch, expires_at FROM agent_leases "
                                   "WHERE agent = ?", (agent,)).fetchone()
                if row is None:
                    won = conn.execute(
                        "INSERT INTO agent_leases (agent, owner, epoch, acquired_at, "
                        "expires_at) VALUES (?, ?, 1, ?, ?) ON CONFLICT DO NOTHING",
                        (agent, worker, now, now + lease_s)).rowcount == 1
                    epoch = 1
                else:
                    owner, old_epoch, expires_at = row
                    if owner is not None and expires_at > now:
                        continue
                    epoch = old_epoch + 1
                    won = conn.execute(
                        "UPDATE agent_leases SET owner = ?, epoch = ?, acquired_at = ?, "
                        "expires_at = ? WHERE agent = ? AND epoch = ?",
                        (worker, epoch, now, now + lease_s, agent, old_epoch)).rowcount == 1
                if won:
                    granted.append(AgentGrant(agent, epoch, _requeue(conn, agent, now)))
            return granted

        result: list[AgentGrant] = await self.write(op)
        return result

    async def renew_agents(self: _Writes, worker: str, held: dict[str, int],
                           lease_s: float) -> list[str]:
        """Extend the leases ``worker`` holds (agent -> epoch); return the agents whose
        lease it no longer holds (taken over, or released by someone)."""
        def op(conn: sqlite3.Connection) -> list[str]:
            now = time.time()
            lost = []
            for agent, epoch in held.items():
                if conn.execute("UPDATE agent_leases SET expires_at = ? WHERE agent = ? "
                                "AND owner = ? AND epoch = ?",
                                (now + lease_s, agent, worker, epoch)).rowcount == 0:
                    lost.append(agent)
            return lost

        result: list[str] = await self.write(op)
        return result

    async def release_agents(self: _Writes, worker: str, held: dict[str, int]
                             ) -> list[str]:
        """Hand agents over at once: requeue what they left running or waiting and
        clear the lease, so that any live worker may take them now. Returns the ids
        of the tasks put back in the queue."""
        def op(conn: sqlite3.Connection) -> list[str]:
            now = time.time()
            requeued: list[str] = []
            for agent, epoch in held.items():
                if conn.execute("UPDATE agent_leases SET owner = NULL, expires_at = 0 "
                                "WHERE agent = ? AND owner = ? AND epoch = ?",
                                (agent, worker, epoch)).rowcount == 1:
                    requeued.extend(_requeue(conn, agent, now))
            return requeued

        result: list[str] = await self.write(op)
        return result

    async def list_workers(self: _Writes) -> list[tuple[str, int, str, float]]:
        """Every worker seen lately: (id, pid, host, lease expiry)."""
        rows: list[Any] = await self.read(lambda c: c.execute(
            "SELECT id, pid, host, expires_at FROM workers ORDER BY started_at").fetchall())
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def expire_workers(self: _Writes, workers: Sequence[str]) -> None:
        """Workers known to be dead (their process is gone): end their leases now, so
        their agents are taken without waiting for the leases to lapse."""
        ids = list(workers)

        def op(conn: sqlite3.Connection) -> None:
            marks = ", ".join("?" for _ in ids)
            conn.execute(f"UPDATE workers SET expires_at = 0 WHERE id IN ({marks})", ids)
            conn.execute(f"UPDATE agent_leases SET expires_at = 0 WHERE owner IN ({marks})",
                         ids)

        if ids:
            await self.write(op)

    async def request_command(self: _Writes, agent: str, command: str,
                              argument: str | None = None) -> None:
        await self.write(lambda c: c.execute(
            "INSERT INTO agent_commands (agent, command, argument, requested_at) "
            "VALUES (?, ?, ?, ?)", (agent, command, argument, time.time())))

    async def take_commands(self: _Writes, agents: Collection[str]
                            ) -> list[tuple[str, str, str | None]]:
        """Take (once) the open commands for ``agents``, oldest first."""
        wanted = list(agents)

        def op(conn: sqlite3.Connection) -> list[tuple[str, str, str | None]]:
            marks = ", ".join("?" for _ in wanted)
            rows = conn.execute(
                f"UPDATE agent_commands SET taken_at = ? WHERE taken_at IS NULL AND agent IN "
                f"({marks}) RETURNING seq, agent, command, argument",
                [time.time(), *wanted]).fetchall()
            return [(r[1], r[2], r[3]) for r in sorted(rows)]

        if not wanted:
            return []
        result: list[tuple[str, str, str | None]] = await self.write(op)
        return result

    async def retire_worker(self: _Writes, worker: str) -> None:
        await self.write(lambda c: c.execute("DELETE FROM workers WHERE id = ?", (worker,)))

    async def agent_owners(self: _Writes) -> dict[str, tuple[str | None, int, float]]:
        """Every agent lease: agent -> (owner or None, epoch, expires_at)."""
        rows: Iterable[Any] = await self.read(lambda c: c.execute(
            "SELECT agent, owner, epoch, expires_at FROM agent_leases").fetchall())
        return {r[0]: (r[1], r[2], r[3]) for r in rows}
