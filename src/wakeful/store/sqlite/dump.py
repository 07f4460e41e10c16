"""Whole tables out of and into the SQLite store, for ``wakeful store copy`` (a mixin
of :class:`~wakeful.store.sqlite.store.SQLiteStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class _Writes(Protocol):
    async def write(self, op: Callable[[sqlite3.Connection], Any]) -> Any: ...

    async def read(self, query: Callable[[sqlite3.Connection], Any]) -> Any: ...


class SQLiteDump:
    async def table_names(self: _Writes) -> list[str]:
        rows = await self.read(lambda c: c.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
            "'sqlite_%' ORDER BY name").fetchall())
        return [r[0] for r in rows]

    async def export_rows(self: _Writes, table: str
                          ) -> tuple[list[str], list[tuple[Any, ...]]]:
        def query(conn: sqlite3.Connection) -> tuple[list[str], list[tuple[Any, ...]]]:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            return [d[0] for d in cursor.description], cursor.fetchall()

        result: tuple[list[str], list[tuple[Any, ...]]] = await self.read(query)
        return result

    async def import_rows(self: _Writes, table: str, columns: Sequence[str],
                          rows: Sequence[Sequence[Any]]) -> None:
        names = ", ".join(f'"{c}"' for c in columns)
        sql = f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" for _ in columns)})'
        await self.write(lambda c: c.executemany(sql, [tuple(r) for r in rows]))

    async def clear(self: _Writes) -> None:
        names = await SQLiteDump.table_names(self)

        def op(conn: sqlite3.Connection) -> None:
            for name in names:
                conn.execute(f'DELETE FROM "{name}"')

        await self.write(op)
