"""A store that cannot take writes for a while (its disk full) holds them, and applies
them when it can again: no task is failed or abandoned for it, nothing is lost.

The fault is real: SQLite's ``max_page_count`` caps the file's size, so writes fail
with SQLITE_FULL ("database or disk is full") exactly as on a full disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

from polling import until
from wakeful.core.states import TaskState
from wakeful.runtime.agent import new_task_record
from wakeful.store.sqlite import SQLiteStore


async def _pragma(store: SQLiteStore, sql: str) -> int:
    """Run a pragma on the writer's own connection, beside the queue (as an operator
    freeing disk space would, outside Wakeful)."""
    loop = asyncio.get_running_loop()
    conn = store._wconn
    assert conn is not None
    row = await loop.run_in_executor(store._writer_thread,
                                     lambda: conn.execute(sql).fetchone())
    return int(row[0]) if row else 0


async def test_writes_wait_out_a_full_disk_and_land_after(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "wakeful.db")
    await store.open()
    try:
        pages = await _pragma(store, "PRAGMA page_count")
        await _pragma(store, f"PRAGMA max_page_count = {pages}")  # full, from now on
        records = [new_task_record("a", "x" * 20_000) for _ in range(5)]
        writes = [asyncio.ensure_future(store.create_task(r)) for r in records]
        await until(lambda: store.outage is not None, 10, "the writes to be held")
        assert "full" in store.outage
        assert not any(w.done() for w in writes)  # held, not failed
        await _pragma(store, "PRAGMA max_page_count = 1000000")  # space again
        await asyncio.gather(*writes)
        assert store.outage is None
        stored = await store.list_tasks()
        assert sorted(t.id for t in stored) == sorted(r.id for r in records)
        assert {t.state for t in stored} == {TaskState.QUEUED}
    finally:
        await store.close()


async def test_a_write_wrong_by_itself_still_fails_alone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "wakeful.db")
    await store.open()
    try:
        record = new_task_record("a", "x")
        await store.create_task(record)
        duplicate, fine = await asyncio.gather(store.create_task(record),
                                               store.create_task(new_task_record("a", "y")),
                                               return_exceptions=True)
        assert "UNIQUE" in str(duplicate) and fine is None
        assert store.outage is None
    finally:
        await store.close()
