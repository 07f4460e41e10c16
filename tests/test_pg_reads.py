"""The PostgreSQL store's read pool: a read that fails inside a transaction hands its
connection back clean, and a plain read costs one round trip (no reset query after it)."""

from __future__ import annotations

import itertools

import asyncpg
import pytest

from wakeful.store import open_store
from wakeful.store.postgres import PostgresStore
from wakeful.store.postgres.store import READ_POOL_SIZE


async def test_reads_leave_their_connections_clean_without_a_reset_query(pg_url: str
                                                                         ) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        async def midway(conn: asyncpg.Connection) -> None:
            await conn.execute("BEGIN")
            await conn.execute("SELECT 1")
            raise RuntimeError("the read failed midway")

        for _ in range(2 * READ_POOL_SIZE):  # every pooled connection, each more than once
            with pytest.raises(RuntimeError, match="midway"):
                await store.read(midway)

        async def in_transaction(conn: asyncpg.Connection) -> bool:
            return conn.is_in_transaction()

        assert not any([await store.read(in_transaction) for _ in range(2 * READ_POOL_SIZE)])

        async def queries(conn: asyncpg.Connection) -> int:
            count: int = conn._protocol.queries_count  # what asyncpg sent on it
            await conn.fetchval("SELECT 1")
            return count

        counts = [await store.read(queries) for _ in range(3 * READ_POOL_SIZE)]
        # One connection's counts along the reads it served: one query each, no reset.
        assert any(b - a == 1 for a, b in itertools.pairwise(counts))
        assert not any(b - a == 2 for a, b in itertools.pairwise(counts))
    finally:
        await store.close()
