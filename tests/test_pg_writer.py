"""The PostgreSQL store's group-commit writer outlives a batch that fails for a reason
that is neither a lost connection nor one write's fault: that batch's writes fail with
a clear error, and the writes after it go through (before, the writer's task died and
every later write of the process waited for good)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from wakeful.errors import StoreError
from wakeful.store import open_store
from wakeful.store.postgres import PostgresStore


async def test_a_batch_that_fails_whole_fails_its_writes_not_the_writer(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        async def select(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval("SELECT 41 + 1")

        writer = store._writer
        original = writer._channel

        def channel(topic: str) -> str:
            if topic == "broken":
                raise RuntimeError("no channel for this topic")
            return original(topic)

        monkeypatch.setattr(writer, "_channel", channel)
        with pytest.raises(StoreError, match="no channel for this topic"):
            await store.write(select, ring=("broken",))
        assert await store.write(select, ring=("tasks",)) == 42  # the writer lives on
    finally:
        await store.close()
