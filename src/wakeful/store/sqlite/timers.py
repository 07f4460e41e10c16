"""SQLite persistence of timers and waits.

Every operation is a function on a ``sqlite3.Connection`` run through ``store.write``
(one savepoint of the next group commit) or ``store.read``. The one that matters is
:func:`claim_firings`: a firing is claimed with a compare-and-set on the timer's due
time (``UPDATE ... WHERE id = ? AND state = 'active' AND next_due = ?``), and what the
firing does (the tasks it starts, its ``timer.fired`` event) is written in the same
transaction. Two processes that both see a timer come due cannot both fire it, and a
process killed mid-firing leaves either all of it or none of it: each due time fires
exactly once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from wakeful.core.timers import COLUMNS, Claim, Timer
from wakeful.store.sqlite.rows import EVENT_INSERT, event_row, task_insert
from wakeful.store.sqlite.store import SQLiteStore

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM timers"
_INSERT = (f"INSERT INTO timers ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join('?' for _ in COLUMNS)})")


class SQLiteTimerStore:
    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def insert(self, timer: Timer) -> Timer:
        """Store a new timer; if one with the same key exists, return that one instead."""
        def op(conn: sqlite3.Connection) -> Timer:
            if timer.key is not None:
                row = conn.execute(_SELECT + " WHERE key = ?", (timer.key,)).fetchone()
                if row is not None:
                    return Timer.from_row(row)
            conn.execute(_INSERT, timer.row())
            return timer

        found: Timer = await self.store.write(op)
        return found

    async def by_key(self, key: str) -> Timer | None:
        row = await self.store.read(lambda c: c.execute(_SELECT + " WHERE key = ?",
                                                        (key,)).fetchone())
        return Timer.from_row(row) if row else None

    async def get(self, timer_id: str) -> Timer | None:
        row = await self.store.read(lambda c: c.execute(_SELECT + " WHERE id = ?",
                                                        (timer_id,)).fetchone())
        return Timer.from_row(row) if row else None

    async def active(self) -> list[Timer]:
        rows = await self.store.read(lambda c: c.execute(
            _SELECT + " WHERE state = 'active' ORDER BY next_due").fetchall())
        return [Timer.from_row(r) for r in rows]

    async def listing(self, *, agent: str | None = None, task_id: str | None = None,
                   include_ended: bool = False, limit: int = 1000) -> list[Timer]:
        clauses: list[str] = []
        params: list[Any] = []
        if agent is not None:
            clauses.append("agent = ?")
            params.append(agent)
        if task_id is not None:
            clauses.append("task_id = ?")
            params.append(task_id)
        if not include_ended:
            clauses.append("state = 'active'")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (f"{_SELECT}{where} ORDER BY state = 'active' DESC, next_due IS NULL, next_due, "
               f"created_at LIMIT {int(limit)}")
        rows = await self.store.read(lambda c: c.execute(sql, params).fetchall())
        return [Timer.from_row(r) for r in rows]

    async def schedule_keys(self, agent: str) -> list[tuple[str, str]]:
        """(id, key) of the agent's schedules registered from its agent file."""
        rows = await self.store.read(lambda c: c.execute(
            "SELECT id, key FROM timers WHERE agent = ? AND state = 'active' AND "
            "created_by = 'agent-file'", (agent,)).fetchall())
        return [(r[0], r[1]) for r in rows]

    async def claim_firings(self, claims: Sequence[Claim]) -> list[bool]:
        """Claim each firing and write its effects; True where this call won it."""
        def op(conn: sqlite3.Connection) -> list[bool]:
            won: list[bool] = []
            for claim in claims:
                timer = claim.timer
                state = "active" if claim.next_due is not None else "done"
                cursor = conn.execute(
                    "UPDATE timers SET next_due = ?, last_fired = ?, fired = fired + ?, "
                    "state = ?, ended_at = ? WHERE id = ? AND state = 'active' "
                    "AND next_due = ?",
                    (claim.next_due, claim.fired_at if claim.runs else timer.last_fired,
                     claim.runs, state, None if state == "active" else claim.fired_at,
                     timer.id, claim.due))
                if cursor.rowcount != 1:
                    won.append(False)
                    continue
                for record in claim.tasks:
                    conn.execute(*task_insert(record))
                for event in claim.events:
                    event.id = conn.execute(EVENT_INSERT, event_row(event)).lastrowid
                won.append(True)
            return won

        result: list[bool] = await self.store.write(op)
        return result

    def end_waits_nowait(self, ended: Iterable[tuple[str, str, str, float]]) -> None:
        """Record how waits ended: (timer id, state, outcome JSON, when). The first end
        recorded wins; queued for the next commit (ordered before anything the waiting
        task writes afterwards, such as its completed step)."""
        rows = list(ended)

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE timers SET state = ?, outcome = ?, ended_at = ?, next_due = NULL, "
                "fired = fired + (? = 'done'), last_fired = CASE WHEN ? = 'done' THEN ? ELSE "
                "last_fired END WHERE id = ? AND state = 'active'",
                [(state, outcome, when, state, state, when, timer_id)
                 for timer_id, state, outcome, when in rows])

        self.store.write_nowait(op)

    def forget_task_nowait(self, task_id: str) -> None:
        """Delete the wait rows of a task that has finished (queued for the next commit)."""
        self.store.write_nowait(lambda c: c.execute(
            "DELETE FROM timers WHERE task_id = ? AND action = 'wake_task'", (task_id,)))

    async def cancel(self, timer_id: str, when: float, why: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE timers SET state = 'cancelled', ended_at = ?, next_due = NULL, "
                "outcome = COALESCE(outcome, ?) WHERE id = ? AND state = 'active'",
                (when, why, timer_id))
            return cursor.rowcount == 1

        done: bool = await self.store.write(op)
        return done

    async def cancel_keys(self, keys: Iterable[str], when: float, why: str) -> None:
        wanted = [(when, why, key) for key in keys]
        if not wanted:
            return
        await self.store.write(lambda c: c.executemany(
            "UPDATE timers SET state = 'cancelled', ended_at = ?, next_due = NULL, "
            "outcome = COALESCE(outcome, ?) WHERE key = ? AND state = 'active'", wanted))
