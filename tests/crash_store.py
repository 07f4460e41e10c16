"""The store of a crash test's project, on either backend, read back with plain SQL.

A crash test runs ``wakeful`` in real processes, kills them, and checks what the store
holds. On SQLite the project keeps its default file; on PostgreSQL its
``wakeful.yaml`` names a fresh schema of the run's database. Either way the test reads
rows with the same SQL (what both dialects share).
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest


@dataclass
class CrashStore:
    root: Path
    url: str | None  # None: the project's default SQLite file

    @property
    def backend(self) -> str:
        return "sqlite" if self.url is None else "postgresql"

    def yaml(self) -> str:
        """The line that points a project's ``wakeful.yaml`` at this store."""
        return "" if self.url is None else f"store: {{url: '{self.url}'}}\n"

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.url is None:
            with sqlite3.connect(self.root / "wakeful.db", timeout=10) as conn:
                return conn.execute(sql).fetchall()
        url = self.url

        async def fetch() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(url, timeout=10)
            try:
                return [tuple(row) for row in await conn.fetch(sql)]
            finally:
                await conn.close()

        with ThreadPoolExecutor(1) as pool:  # a loop of its own, whoever calls
            return pool.submit(asyncio.run, fetch()).result()

    def has_run(self) -> bool:
        """Has a runtime recorded its run? (Before that, the schema may not exist.)"""
        try:
            return bool(self.query("SELECT COUNT(*) FROM runs")[0][0])
        except (sqlite3.OperationalError, asyncpg.PostgresError):
            return False


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_store(request: pytest.FixtureRequest, tmp_path: Path) -> CrashStore:
    if request.param == "sqlite":
        return CrashStore(tmp_path, None)
    return CrashStore(tmp_path, request.getfixturevalue("pg_url"))
