"""PostgreSQL persistence of timers and waits (a port of the SQLite family).

The one that matters is :meth:`PgTimerStore.claim_firings`: a firing is claimed with a
compare-and-set on the timer's due time (``UPDATE ... WHERE id = $ AND state = 'active'
AND next_due = $``), and what the firing does (the tasks it starts, its
``timer.fired`` event) is written in the same transaction. Two workers that both see a
timer come due cannot both fire it: the second one's UPDATE waits for the first's
commit on the row, then finds the due time changed and updates nothing. A worker killed
mid-firing leaves all of it or none of it: each due time fires exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from wakeful.core.timers import COLUMNS, Claim, Timer
from wakeful.store.postgres.inserts import columns, insert_events
from wakeful.store.postgres.rows import marks, task_insert

if TYPE_CHECKING:
    from wakeful.store.postgres.store import PostgresStore

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM timers"
_INSERT = f"INSERT INTO timers ({', '.join(COLUMNS)}) VALUES ({marks(1, len(COLUMNS))})"
RING = ("timers",)


def _timer(row: Any) -> Timer:
    return Timer.from_row(tuple(row))


class PgTimerStore:
    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def insert(self, timer: Timer) -> Timer:
        """Store a new timer; if one with the same key exists, return that one instead
        (also when another worker inserts it at the same moment)."""
        async def op(conn: asyncpg.Connection) -> Timer:
            if timer.key is None:
                await conn.execute(_INSERT, *timer.row())
                return timer
            status = await conn.execute(_INSERT + " ON CONFLICT (key) DO NOTHING",
                                        *timer.row())
            if not status.endswith(" 0"):
                return timer
            return _timer(await conn.fetchrow(_SELECT + " WHERE key = $1", timer.key))

        found: Timer = await self.store.write(op, ring=RING)
        return found

    async def by_key(self, key: str) -> Timer | None:
        rows = await self.store.fetch(_SELECT + " WHERE key = $1", key)
        return _timer(rows[0]) if rows else None

    async def get(self, timer_id: str) -> Timer | None:
        rows = await self.store.fetch(_SELECT + " WHERE id = $1", timer_id)
        return _timer(rows[0]) if rows else None

    async def active(self) -> list[Timer]:
        rows = await self.store.fetch(_SELECT + " WHERE state = 'active' ORDER BY next_due")
        return [_timer(r) for r in rows]

    async def listing(self, *, agent: str | None = None, task_id: str | None = None,
                      include_ended: bool = False, limit: int = 1000) -> list[Timer]:
        clauses: list[str] = []
        params: list[Any] = []
        if agent is not None:
            params.append(agent)
            clauses.append(f"agent = ${len(params)}")
        if task_id is not None:
            params.append(task_id)
            clauses.append(f"task_id = ${len(params)}")
        if not include_ended:
            clauses.append("state = 'active'")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (f"{_SELECT}{where} ORDER BY state = 'active' DESC, next_due IS NULL, "
               f"next_due, created_at LIMIT {int(limit)}")
        return [_timer(r) for r in await self.store.fetch(sql, *params)]

    async def schedule_keys(self, agent: str) -> list[tuple[str, str]]:
        """(id, key) of the agent's schedules registered from its agent file."""
        rows = await self.store.fetch(
            "SELECT id, key FROM timers WHERE agent = $1 AND state = 'active' AND "
            "created_by = 'agent-file'", agent)
        return [(r[0], r[1]) for r in rows]

    async def claim_firings(self, claims: Sequence[Claim]) -> list[bool]:
        """Claim each firing and write its effects; True where this call won it."""
        rows = [(claim.timer.id, claim.due, claim.next_due,
                 claim.fired_at if claim.runs else claim.timer.last_fired, claim.runs,
                 "active" if claim.next_due is not None else "done",
                 None if claim.next_due is not None else claim.fired_at) for claim in claims]

        async def op(conn: asyncpg.Connection) -> list[bool]:
            # One statement claims them all: each row is a compare-and-set on its due
            # time; the winners' tasks and events follow in two more statements.
            taken = {r[0] for r in await conn.fetch(
                "UPDATE timers t SET next_due = c.next_due, last_fired = c.last_fired, "
                "fired = t.fired + c.runs, state = c.state, ended_at = c.ended_at FROM "
                "unnest($1::text[], $2::float8[], $3::float8[], $4::float8[], $5::int[], "
                "$6::text[], $7::float8[]) AS c(id, due, next_due, last_fired, runs, state, "
                "ended_at) WHERE t.id = c.id AND t.state = 'active' AND t.next_due = c.due "
                "RETURNING t.id", *columns(rows, 7))}
            won = []
            for claim in claims:  # a timer listed twice fires once
                won.append(claim.timer.id in taken)
                taken.discard(claim.timer.id)
            winners = [claim for claim, ok in zip(claims, won, strict=True) if ok]
            records = [record for claim in winners for record in claim.tasks]
            if records:
                sql, _ = task_insert(records[0])
                await conn.executemany(sql, [task_insert(r)[1] for r in records])
            await insert_events(conn, [e for claim in winners for e in claim.events])
            return won

        starts = any(claim.tasks for claim in claims)
        result: list[bool] = await self.store.write(
            op, ring=("tasks", *RING) if starts else RING)
        return result

    def end_waits_nowait(self, ended: Iterable[tuple[str, str, str, float]]) -> None:
        """Record how waits ended: (timer id, state, outcome JSON, when). The first end
        recorded wins; queued for the next commit (ordered before anything the waiting
        task writes afterwards, such as its completed step)."""
        rows = list(ended)

        async def op(conn: asyncpg.Connection) -> None:
            await conn.executemany(
                "UPDATE timers SET state = $1, outcome = $2, ended_at = $3, next_due = NULL, "
                "fired = fired + (CASE WHEN $1 = 'done' THEN 1 ELSE 0 END), last_fired = "
                "CASE WHEN $1 = 'done' THEN $3 ELSE last_fired END WHERE id = $4 AND "
                "state = 'active'", [(state, outcome, when, timer_id)
                                     for timer_id, state, outcome, when in rows])

        if rows:
            self.store.write_nowait(op, ring=RING)

    def forget_task_nowait(self, task_id: str) -> None:
        """Delete the wait rows of a task that has finished (queued for the next commit)."""
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM timers WHERE task_id = $1 AND "
                               "action = 'wake_task'", task_id)

        self.store.write_nowait(op)

    async def cancel(self, timer_id: str, when: float, why: str) -> bool:
        async def op(conn: asyncpg.Connection) -> bool:
            status: str = await conn.execute(
                "UPDATE timers SET state = 'cancelled', ended_at = $1, next_due = NULL, "
                "outcome = COALESCE(outcome, $2) WHERE id = $3 AND state = 'active'",
                when, why, timer_id)
            return status.endswith(" 1")

        done: bool = await self.store.write(op, ring=RING)
        return done

    async def cancel_keys(self, keys: Iterable[str], when: float, why: str) -> None:
        wanted = [(when, why, key) for key in keys]
        if not wanted:
            return

        async def op(conn: asyncpg.Connection) -> None:
            await conn.executemany(
                "UPDATE timers SET state = 'cancelled', ended_at = $1, next_due = NULL, "
                "outcome = COALESCE(outcome, $2) WHERE key = $3 AND state = 'active'", wanted)

        await self.store.write(op, ring=RING)
