"""Whole tables out of and into the PostgreSQL store, for ``wakeful store copy`` (a
mixin of :class:`~wakeful.store.postgres.store.PostgresStore`).

Values are converted to each column's type on the way in (SQLite keeps a boolean as
0/1 and may keep a whole number in a REAL column; asyncpg wants the exact type), and
identity sequences are moved past the copied values, so that lock tokens and other
ids keep growing after a move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import asyncpg

_CONVERT: dict[str, Callable[[Any], Any]] = {
    "double precision": float, "boolean": bool, "bigint": int, "integer": int,
    "text": str}


class _Writes(Protocol):
    async def write(self, op: Callable[[asyncpg.Connection], Any]) -> Any: ...

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...


class PgDump:
    async def table_names(self: _Writes) -> list[str]:
        rows = await self.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_type = 'BASE TABLE' AND table_name != "
            "'wakeful_schema' ORDER BY table_name")
        return [r[0] for r in rows]

    async def clear(self: _Writes) -> None:
        names = await PgDump.table_names(self)

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("TRUNCATE " + ", ".join(f'"{n}"' for n in names))

        if names:
            await self.write(op)

    async def export_rows(self: _Writes, table: str
                          ) -> tuple[list[str], list[tuple[Any, ...]]]:
        columns = [r[0] for r in await self.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = $1 ORDER BY ordinal_position", table)]
        names = ", ".join(f'"{c}"' for c in columns)
        rows = await self.fetch(f'SELECT {names} FROM "{table}"')
        return columns, [tuple(r) for r in rows]

    async def import_rows(self: _Writes, table: str, columns: Sequence[str],
                          rows: Sequence[Sequence[Any]]) -> None:
        types = {r[0]: r[1] for r in await self.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE "
            "table_schema = current_schema() AND table_name = $1", table)}
        unknown = [c for c in columns if c not in types]
        if unknown:
            raise ValueError(f"table {table}: no columns {unknown} here")
        converts = [_CONVERT.get(types[c], lambda v: v) for c in columns]
        values = [tuple(None if v is None else f(v) for f, v in zip(converts, row, strict=True))
                  for row in rows]
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join(f"${i + 1}" for i in range(len(columns)))

        async def op(conn: asyncpg.Connection) -> None:
            await conn.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', values)
            for column in columns:
                sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, $2)",
                                               table, column)
                if sequence is not None:
                    await conn.execute(
                        f'SELECT setval($1, GREATEST((SELECT MAX("{column}") FROM "{table}"), '
                        "1))", sequence)

        await self.write(op)
