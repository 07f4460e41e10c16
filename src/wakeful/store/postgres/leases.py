"""Who runs what, in the PostgreSQL store: workers, agent leases, commands.

Every decision is made in one transaction on the database's clock (``NOW``), which
every worker on every machine shares: free or lapsed agents are taken with
``FOR UPDATE SKIP LOCKED`` (two workers never wait on, or both take, one agent), the
epoch is raised by one, and the tasks the previous owner left running or waiting are
put back in the queue in the same transaction. Fenced writes lock the lease row
``FOR SHARE`` (see :data:`~wakeful.store.postgres.rows.FENCE_SQL`), so a takeover waits
for them to commit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Protocol

import asyncpg

from wakeful.core.records import AgentGrant
from wakeful.store.postgres.schema import NOW


async def _requeue(conn: asyncpg.Connection, agent: str) -> tuple[str, ...]:
    rows = await conn.fetch(
        f"UPDATE tasks SET state = 'queued', owner = NULL, updated_at = {NOW} "
        "WHERE agent = $1 AND state IN ('running', 'waiting') RETURNING id, created_at",
        agent)
    return tuple(r[0] for r in sorted(rows, key=lambda r: (r[1], r[0])))


class _Writes(Protocol):
    async def write(self, op: Callable[[asyncpg.Connection], Any],
                    ring: Iterable[str] = ()) -> Any: ...

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...


class PgLeases:
    async def heartbeat(self: _Writes, worker: str, pid: int, host: str, lease_s: float
                        ) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            await conn.execute(
                f"INSERT INTO workers (id, pid, host, started_at, expires_at) VALUES "
                f"($1, $2, $3, {NOW}, {NOW} + $4) ON CONFLICT (id) DO UPDATE SET "
                "expires_at = excluded.expires_at", worker, pid, host, lease_s)
            await conn.execute(f"DELETE FROM workers WHERE expires_at < {NOW} - 3600")
            await conn.execute(f"DELETE FROM mail_wakeups WHERE at < {NOW} - 3600")
            count: int = await conn.fetchval(
                f"SELECT COUNT(*) FROM workers WHERE expires_at > {NOW}")
            return count

        result: int = await self.write(op)
        return result

    async def acquire_agents(self: _Writes, worker: str, agents: Sequence[str],
                             lease_s: float, limit: int) -> list[AgentGrant]:
        wanted = list(agents)

        async def op(conn: asyncpg.Connection) -> list[AgentGrant]:
            await conn.execute("INSERT INTO agent_leases (agent) SELECT unnest($1::text[]) "
                               "ON CONFLICT DO NOTHING", wanted)
            rows = await conn.fetch(
                f"SELECT agent, epoch FROM agent_leases WHERE agent = ANY($1::text[]) AND "
                f"(owner IS NULL OR expires_at <= {NOW}) ORDER BY array_position($1, agent) "
                "LIMIT $2 FOR UPDATE SKIP LOCKED", wanted, max(0, limit))
            granted: list[AgentGrant] = []
            for agent, epoch in rows:
                await conn.execute(
                    f"UPDATE agent_leases SET owner = $1, epoch = $2, acquired_at = {NOW}, "
                    f"expires_at = {NOW} + $3 WHERE agent = $4", worker, epoch + 1, lease_s,
                    agent)
                granted.append(AgentGrant(agent, epoch + 1, await _requeue(conn, agent)))
            return granted

        if not wanted or limit <= 0:
            return []
        result: list[AgentGrant] = await self.write(op, ring=("tasks",))
        return result

    async def renew_agents(self: _Writes, worker: str, held: dict[str, int],
                           lease_s: float) -> list[str]:
        names, epochs = list(held), list(held.values())

        async def op(conn: asyncpg.Connection) -> list[str]:
            rows = await conn.fetch(
                f"UPDATE agent_leases l SET expires_at = {NOW} + $1 FROM unnest($2::text[], "
                "$3::bigint[]) AS h(agent, epoch) WHERE l.agent = h.agent AND l.epoch = "
                "h.epoch AND l.owner = $4 RETURNING l.agent", lease_s, names, epochs, worker)
            kept = {r[0] for r in rows}
            return [agent for agent in names if agent not in kept]

        if not names:
            return []
        result: list[str] = await self.write(op)
        return result

    async def release_agents(self: _Writes, worker: str, held: dict[str, int]
                             ) -> list[str]:
        async def op(conn: asyncpg.Connection) -> list[str]:
            requeued: list[str] = []
            for agent, epoch in held.items():
                status = await conn.execute(
                    "UPDATE agent_leases SET owner = NULL, expires_at = 0 WHERE agent = $1 "
                    "AND owner = $2 AND epoch = $3", agent, worker, epoch)
                if status.endswith(" 1"):
                    requeued.extend(await _requeue(conn, agent))
            return requeued

        if not held:
            return []
        result: list[str] = await self.write(op, ring=("agents", "tasks"))
        return result

    async def list_workers(self: _Writes) -> list[tuple[str, int, str, float]]:
        rows = await self.fetch("SELECT id, pid, host, expires_at FROM workers "
                                "ORDER BY started_at")
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def expire_workers(self: _Writes, workers: Sequence[str]) -> None:
        ids = list(workers)

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("UPDATE workers SET expires_at = 0 WHERE id = ANY($1::text[])",
                               ids)
            await conn.execute("UPDATE agent_leases SET expires_at = 0 "
                               "WHERE owner = ANY($1::text[])", ids)

        if ids:
            await self.write(op, ring=("agents",))

    async def request_command(self: _Writes, agent: str, command: str,
                              argument: str | None = None) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(f"INSERT INTO agent_commands (agent, command, argument, "
                               f"requested_at) VALUES ($1, $2, $3, {NOW})",
                               agent, command, argument)

        await self.write(op, ring=("commands",))

    async def take_commands(self: _Writes, agents: Collection[str]
                            ) -> list[tuple[str, str, str | None]]:
        wanted = list(agents)

        async def op(conn: asyncpg.Connection) -> list[tuple[str, str, str | None]]:
            rows = await conn.fetch(
                f"UPDATE agent_commands SET taken_at = {NOW} WHERE seq IN (SELECT seq FROM "
                "agent_commands WHERE taken_at IS NULL AND agent = ANY($1::text[]) "
                "FOR UPDATE SKIP LOCKED) RETURNING seq, agent, command, argument", wanted)
            return [(r[1], r[2], r[3]) for r in sorted(rows, key=lambda r: r[0])]

        if not wanted:
            return []
        result: list[tuple[str, str, str | None]] = await self.write(op)
        return result

    async def retire_worker(self: _Writes, worker: str) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM workers WHERE id = $1", worker)

        await self.write(op, ring=("agents",))

    async def agent_owners(self: _Writes) -> dict[str, tuple[str | None, int, float]]:
        rows = await self.fetch("SELECT agent, owner, epoch, expires_at FROM agent_leases")
        return {r[0]: (r[1], r[2], r[3]) for r in rows}
