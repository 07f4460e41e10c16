"""The SQLite store: migrations, WAL, persistence, group commit, events."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wakeful.core.records import AgentRecord, Event, RunRecord, TaskRecord
from wakeful.core.states import AgentState, TaskState
from wakeful.errors import StoreError
from wakeful.ids import new_id
from wakeful.store.sqlite import SQLiteStore
from wakeful.store.sqlite.migrations import MIGRATIONS


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(db_path)
    await opened.open()
    yield opened
    await opened.close()


def raw(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read the file with a plain sqlite3 connection, independent of the store."""
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def task(agent: str = "a", instruction: str = "job", **fields: object) -> TaskRecord:
    return TaskRecord(id=new_id("t"), agent=agent, instruction=instruction,
                      **fields)  # type: ignore[arg-type]


async def test_migrations_and_wal(store: SQLiteStore, db_path: Path) -> None:
    assert len(MIGRATIONS) >= 1
    assert raw(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    tables = {r[0] for r in raw(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "agents", "tasks", "task_messages", "events"} <= tables


async def test_newer_schema_is_refused(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    newer = SQLiteStore(db_path)
    with pytest.raises(StoreError, match="newer than this Wakeful understands"):
        await newer.open()
    await newer.close()


async def test_reopen_existing_file_keeps_data(db_path: Path) -> None:
    first = SQLiteStore(db_path)
    await first.open()
    assert await first.begin_run(RunRecord(id="run_1", started_at=1.0, pid=1)) is True
    record = task(instruction="persist me")
    await first.create_task(record)
    await first.save_step(record.id, 0, [{"role": "user", "content": "persist me"}],
                          step=1, state="running")
    await first.save_agent(AgentRecord("a", AgentState.PAUSED, "nap", restarts=2))
    first.append_event(Event(type="x.happened", agent="a", data={"n": 1}))
    await first.close()

    second = SQLiteStore(db_path)
    await second.open()
    try:
        assert raw(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        assert await second.begin_run(RunRecord(id="run_2", started_at=2.0, pid=1)) is False
        latest = await second.latest_run()
        assert latest is not None and latest.id == "run_2"
        loaded = await second.get_task(record.id)
        assert loaded is not None
        assert (loaded.instruction, loaded.step, loaded.state) == (
            "persist me", 1, TaskState.RUNNING)
        assert await second.load_messages(record.id) == [
            {"role": "user", "content": "persist me"}]
        agents = await second.load_agents()
        assert (agents["a"].state, agents["a"].reason, agents["a"].restarts) == (
            AgentState.PAUSED, "nap", 2)
        assert [e.type for e in await second.query_events()] == ["x.happened"]
        # The worker that takes the agent puts back what the dead process left running.
        [grant] = await second.acquire_agents("w2", ["a"], 60, 1)
        assert grant.requeued == (record.id,)
        requeued = await second.get_task(record.id)
        assert requeued is not None and requeued.state is TaskState.QUEUED
        await second.release_agents("w2", {"a": grant.epoch})
        [again] = await second.acquire_agents("w3", ["a"], 60, 1)
        assert again.requeued == ()
    finally:
        await second.close()


async def test_failing_write_in_a_batch_fails_alone(store: SQLiteStore, db_path: Path) -> None:
    # Hold the writer thread so that the next writes pile up into one batch.
    release = threading.Event()
    blocker = asyncio.ensure_future(store.write(lambda c: release.wait(5)))
    await asyncio.sleep(0.05)
    batches_before = store.batches

    def insert(run_id: str) -> object:
        return lambda c: c.execute(
            "INSERT INTO runs (id, started_at, pid) VALUES (?, 0, 0)", (run_id,))

    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO runs (id, started_at, pid) VALUES ('partial', 0, 0)")
        raise ValueError("this write is broken")

    writes = [
        asyncio.ensure_future(store.write(insert("ok_1"))),  # type: ignore[arg-type]
        asyncio.ensure_future(store.write(half_then_fail)),
        asyncio.ensure_future(store.write(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"))),
        asyncio.ensure_future(store.write(insert("ok_2"))),  # type: ignore[arg-type]
    ]
    await asyncio.sleep(0.05)
    release.set()
    await blocker
    results = await asyncio.gather(*writes, return_exceptions=True)

    assert store.batches - batches_before == 2  # the blocker's batch, then all four at once
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], sqlite3.OperationalError)
    assert not isinstance(results[3], BaseException)
    ids = {r[0] for r in raw(db_path, "SELECT id FROM runs")}
    assert ids == {"ok_1", "ok_2"}  # the broken write's first insert was rolled back


async def test_concurrent_writes_are_batched(store: SQLiteStore, db_path: Path) -> None:
    writes_before, batches_before = store.writes, store.batches
    records = [task(instruction=f"job {i}") for i in range(200)]
    await asyncio.gather(*(store.create_task(r) for r in records))
    writes = store.writes - writes_before
    batches = store.batches - batches_before
    assert writes == 200
    assert batches < writes
    assert raw(db_path, "SELECT COUNT(*) FROM tasks") == [(200,)]


async def test_flush_waits_for_queued_events(store: SQLiteStore, db_path: Path) -> None:
    events = [Event(type="tick", data={"i": i}) for i in range(500)]
    for event in events:
        store.append_event(event)
    assert any(e.id is None for e in events)  # not written yet: appending does not wait
    await store.flush()
    assert raw(db_path, "SELECT COUNT(*) FROM events") == [(500,)]
    assert all(e.id is not None for e in events)
    stored = await store.query_events(limit=10_000)
    assert [e.data["i"] for e in stored] == list(range(500))


async def test_close_flushes_pending_events(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    for i in range(50):
        store.append_event(Event(type="tick", data={"i": i}))
    await store.close()
    assert raw(db_path, "SELECT COUNT(*) FROM events") == [(50,)]
    with pytest.raises(StoreError, match="not open"):
        store.append_event(Event(type="late"))


async def test_query_events_filters(store: SQLiteStore) -> None:
    store.append_event(Event(type="task.state", agent="a", task_id="t1", data={"n": 1}))
    store.append_event(Event(type="tool.call", agent="a", task_id="t1", data={"n": 2}))
    store.append_event(Event(type="task.state", agent="b", task_id="t2", data={"n": 3}))
    store.append_event(Event(type="agent.state", agent="a", data={"n": 4}))
    store.append_event(Event(type="run.started", data={"n": 5}))
    await store.flush()

    def ns(found: list[Event]) -> list[int]:
        return [e.data["n"] for e in found]

    assert ns(await store.query_events()) == [1, 2, 3, 4, 5]
    assert ns(await store.query_events(agent="a")) == [1, 2, 4]
    assert ns(await store.query_events(task_id="t1")) == [1, 2]
    assert ns(await store.query_events(types=["task.state"])) == [1, 3]
    assert ns(await store.query_events(types=["task.state", "run.started"])) == [1, 3, 5]
    assert ns(await store.query_events(agent="a", types=["task.state"])) == [1]
    assert ns(await store.query_events(types=[])) == []
    everything = await store.query_events()
    assert ns(await store.query_events(after_id=everything[1].id or 0)) == [3, 4, 5]
    assert ns(await store.query_events(limit=2)) == [1, 2]
    assert ns(await store.query_events(after_id=everything[1].id or 0, limit=1)) == [3]


async def test_list_tasks_filters_and_order(store: SQLiteStore) -> None:
    records = []
    for i in range(6):
        records.append(task(agent="a" if i % 2 else "b", instruction=f"job {i}"))
        await store.create_task(records[-1])
        await asyncio.sleep(0.002)  # ids are time-ordered at millisecond precision
    await store.update_task(records[1].id, state="done", result="ok")
    assert [r.id for r in await store.list_tasks()] == sorted(r.id for r in records)
    assert [r.instruction for r in await store.list_tasks(agent="a")] == [
        "job 1", "job 3", "job 5"]
    done = await store.list_tasks(states=[TaskState.DONE])
    assert [(r.id, r.result, r.state) for r in done] == [(records[1].id, "ok", TaskState.DONE)]
    assert len(await store.list_tasks(limit=2)) == 2
    after = await store.list_tasks(created_after=records[3].id)
    assert [r.id for r in after] == [records[4].id, records[5].id]
    with pytest.raises(ValueError, match="unknown task fields"):
        await store.update_task(records[0].id, colour="red")
    assert await store.get_task("t_missing") is None


async def test_save_step_is_atomic_with_the_task_row(store: SQLiteStore) -> None:
    record = task()
    await store.create_task(record)
    with pytest.raises(ValueError, match="unknown task fields"):
        await store.save_step(record.id, 0, [{"role": "user", "content": "x"}], stepp=1)
    assert await store.load_messages(record.id) == []
    await store.save_step(record.id, 0, [{"role": "system", "content": "s"},
                                         {"role": "user", "content": "u"}])
    await store.save_step(record.id, 2, [{"role": "assistant", "content": "a"}], step=1,
                          input_tokens=7)
    assert [m["role"] for m in await store.load_messages(record.id)] == [
        "system", "user", "assistant"]
    loaded = await store.get_task(record.id)
    assert loaded is not None and (loaded.step, loaded.input_tokens) == (1, 7)


async def test_list_tasks_is_oldest_first_within_one_millisecond(store: SQLiteStore) -> None:
    records = [task(instruction=f"job {i:03d}") for i in range(300)]  # made in a burst
    await asyncio.gather(*(store.create_task(r) for r in records))
    assert [r.instruction for r in await store.list_tasks()] == [
        r.instruction for r in records]
