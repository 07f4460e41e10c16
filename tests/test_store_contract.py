"""The ownership contract of the store port, run against every backend.

Each backend must keep it whatever else it does: a task run is claimed by exactly one
caller, a lease is taken by exactly one worker and only when free, a write carrying a
fence that no longer holds is refused whole, a command is taken once. The fixture is
parametrized by backend so that a new one (PostgreSQL) is held to the same contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from wakeful.core.records import AgentRecord, Fence
from wakeful.core.states import AgentState, TaskState
from wakeful.errors import FenceError, StoreError
from wakeful.runtime.agent import new_task_record
from wakeful.store import Store, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = (f"sqlite:///{tmp_path / 'wakeful.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    opened = open_store(url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_free_agent_is_taken_by_one_worker_only(store: Store) -> None:
    results = await asyncio.gather(*(store.acquire_agents(f"w{i}", ["a", "b"], 60, 2)
                                     for i in range(4)))
    taken = [(g.agent, g.epoch) for grants in results for g in grants]
    assert sorted(taken) == [("a", 1), ("b", 1)]
    # Held and live: nobody else takes it; lapsed: the next one does, at a higher epoch.
    assert await store.acquire_agents("w9", ["a"], 60, 1) == []
    owner = next(f"w{i}" for i, grants in enumerate(results) if any(
        g.agent == "a" for g in grants))
    await store.expire_workers([owner])
    [grant] = await store.acquire_agents("w9", ["a"], 60, 1)
    assert (grant.agent, grant.epoch) == ("a", 2)
    assert await store.renew_agents(owner, {"a": 1}, 60) == ["a"]
    assert await store.renew_agents("w9", {"a": 2}, 60) == []


async def test_taking_an_agent_requeues_what_its_last_owner_left_running(
        store: Store) -> None:
    [grant] = await store.acquire_agents("w1", ["a"], 60, 1)
    fence = Fence("a", "w1", grant.epoch)
    record = new_task_record("a", "work")
    await store.create_task(record)
    assert await store.claim_task(record.id, fence) is not None
    await store.expire_workers(["w1"])
    [taken] = await store.acquire_agents("w2", ["a"], 60, 1)
    assert taken.requeued == (record.id,)
    stored = await store.get_task(record.id)
    assert stored is not None and stored.state is TaskState.QUEUED and stored.owner is None
    with pytest.raises(FenceError):  # the old owner's late write lands nothing
        await store.save_step(record.id, 2, [{"role": "assistant", "content": "late"}],
                              fence=fence, step=1)
    assert await store.load_messages(record.id) == []


async def test_a_task_run_is_claimed_once_and_resumes_where_it_was(store: Store) -> None:
    [grant] = await store.acquire_agents("w1", ["a"], 60, 1)
    fence = Fence("a", "w1", grant.epoch)
    record = new_task_record("a", "work")
    await store.create_task(record)
    opening = [{"role": "system", "content": "s"}, {"role": "user", "content": "work"}]
    claims = await asyncio.gather(*(store.claim_task(record.id, fence, opening)
                                    for _ in range(8)))
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0][1] is False  # a fresh run
    assert [m["content"] for m in await store.load_messages(record.id)] == ["s", "work"]
    await store.save_step(record.id, 2, [{"role": "assistant", "content": "one"}],
                          fence=fence, step=1)
    await store.update_task(record.id, fence, state="queued")
    again = await store.claim_task(record.id, fence, opening)
    assert again is not None and again[1] is True and again[0].step == 1
    assert len(await store.load_messages(record.id)) == 3  # the opening kept, not redone


async def test_an_update_expecting_a_state_changes_nothing_otherwise(store: Store) -> None:
    record = new_task_record("a", "work")
    await store.create_task(record)
    await store.update_task(record.id, state="done", result="ok")
    assert await store.update_task(record.id, expect_state="running", state="queued") is False
    stored = await store.get_task(record.id)
    assert stored is not None and stored.state is TaskState.DONE


async def test_commands_are_taken_once(store: Store) -> None:
    await store.request_command("a", "pause")
    await store.request_command("b", "stop")
    await store.request_command("a", "cancel", "t_1")
    taken = await asyncio.gather(*(store.take_commands(["a"]) for _ in range(4)))
    assert sorted(c for batch in taken for c in batch) == [
        ("a", "cancel", "t_1"), ("a", "pause", None)]
    assert await store.take_commands(["a", "b"]) == [("b", "stop", None)]


async def test_agent_totals_add_up_tasks(store: Store) -> None:
    for state in ("done", "failed", "queued"):
        record = new_task_record("a", state)
        await store.create_task(record)
        await store.update_task(record.id, state=state, input_tokens=10, output_tokens=5,
                                cost=0.5, tool_calls=2)
    totals = (await store.agent_totals("a"))["a"]
    assert (totals.tasks, totals.ended, totals.tokens, totals.tool_calls) == (3, 2, 45, 6)
    assert totals.cost == pytest.approx(1.5)


async def test_a_reader_following_positions_never_skips_a_late_commit(
        request: pytest.FixtureRequest) -> None:
    """Two writers: the one that began first commits last. A reader that follows the
    event log's positions must still see both (on PostgreSQL positions come from the
    transaction id, and reads stop below the oldest running transaction)."""
    import asyncpg

    url = request.getfixturevalue("pg_url")
    store = open_store(url)
    await store.open()
    early, late = await asyncpg.connect(url), await asyncpg.connect(url)
    insert = ("INSERT INTO events (ts, type, data) VALUES (extract(epoch from now()), $1, "
              "'{}')")
    try:
        early_tx, late_tx = early.transaction(), late.transaction()
        await early_tx.start()
        await early.execute(insert, "early")  # takes its position first...
        await late_tx.start()
        await late.execute(insert, "late")
        await late_tx.commit()  # ...but commits last
        seen = [e.type for e in await store.query_events()]
        assert seen == []  # "late" waits below the horizon of the running "early"
        await early_tx.commit()
        followed: list[str] = []
        # (other transactions on the server, older than "early", may still hold the
        # horizon for a moment: wait for them, never skip)
        while len(followed) < 2:
            after = await store.query_events(after_id=0)
            followed = [e.type for e in after]
            assert followed in ([], ["early"], ["early", "late"])
            await asyncio.sleep(0.01)
        assert followed == ["early", "late"]
    finally:
        await early.close()
        await late.close()
        await store.close()


async def test_many_steps_and_agent_states_at_once_refuse_only_a_stale_fence(
        store: Store) -> None:
    """Concurrent writes share a commit (PostgreSQL applies them as one statement per
    kind): each lands whole, and one whose fence moved is refused alone."""
    grants = await store.acquire_agents("w1", [f"a{i}" for i in range(20)], 60, 20)
    fences = {g.agent: Fence(g.agent, "w1", g.epoch) for g in grants}
    records = [new_task_record(f"a{i}", "work") for i in range(20)]
    for record in records:
        await store.create_task(record)
    stale = Fence("a0", "w1", fences["a0"].epoch - 1)

    def step(i: int, n: int, fence: Fence) -> Coroutine[Any, Any, None]:
        return store.save_step(
            records[i].id, 2 * n - 2, [{"role": "assistant", "content": f"m{i}.{n}"},
                                       {"role": "tool", "content": f"r{i}.{n}"}],
            fence=fence, step=n, tool_calls=i, scratch=None if i % 2 else f"s{i}")

    def agent(i: int, fence: Fence) -> Coroutine[Any, Any, None]:
        return store.save_agent(AgentRecord(f"a{i}", AgentState.RUNNING, f"why {i}", i),
                                fence=fence)

    good = range(1, 20)
    first = await asyncio.gather(*(step(i, 1, fences[f"a{i}"]) for i in good),
                                 *(agent(i, fences[f"a{i}"]) for i in good))
    assert first == [None] * 38
    second = await asyncio.gather(step(0, 1, stale), agent(0, stale),
                                  *(step(i, 2, fences[f"a{i}"]) for i in good),
                                  return_exceptions=True)
    assert [type(o).__name__ for o in second[:2]] == ["FenceError", "FenceError"]
    assert second[2:] == [None] * 19
    stored = await store.get_task(records[0].id)
    assert stored is not None and stored.step == 0
    assert await store.load_messages(records[0].id) == []
    for i in good:
        stored = await store.get_task(records[i].id)
        messages = [m["content"] for m in await store.load_messages(records[i].id)]
        assert stored is not None
        assert (stored.step, stored.tool_calls, messages) == (
            2, i, [f"m{i}.1", f"r{i}.1", f"m{i}.2", f"r{i}.2"])
        assert stored.scratch == (None if i % 2 else f"s{i}")
    agents = await store.load_agents()
    assert "a0" not in agents
    assert all((agents[f"a{i}"].state, agents[f"a{i}"].reason, agents[f"a{i}"].restarts)
               == (AgentState.RUNNING, f"why {i}", i) for i in good)


async def test_one_answering_task_per_person_mail_and_agent(store: Store) -> None:
    """Two workers that both saw a person's mail start one task for it, not two."""
    from wakeful.errors import ConflictError

    first = new_task_record("a", "answer", created_by="person:ann", cause_id="m_1")
    await store.create_task(first)
    with pytest.raises(ConflictError):
        await store.create_task(new_task_record("a", "answer", created_by="person:ann",
                                                cause_id="m_1"))
    # another agent, another mail, or a task not started by a person: all allowed
    await store.create_task(new_task_record("b", "answer", created_by="person:ann",
                                            cause_id="m_1"))
    await store.create_task(new_task_record("a", "answer", created_by="person:ann",
                                            cause_id="m_2"))
    await store.create_task(new_task_record("a", "timer", created_by="timer",
                                            cause_id="m_1"))
    caused = await store.tasks_caused_by("m_1", "a")
    assert caused[0].id == first.id


async def test_a_step_queued_behind_one_that_fails_lands_nothing(store: Store) -> None:
    """A task queues its next step while its last tool result is being committed; if
    that result does not land, the step after it must not land either (no hole in the
    conversation), whether the two share a commit or not."""
    [grant] = await store.acquire_agents("w1", ["a"], 60, 1)
    fence = Fence("a", "w1", grant.epoch)
    record = new_task_record("a", "work")
    await store.create_task(record)
    opening = [{"role": "system", "content": "s"}, {"role": "user", "content": "work"}]
    assert await store.claim_task(record.id, fence, opening) is not None

    def step(seq: int, text: str) -> asyncio.Future[None]:
        return store.queue_step(record.id, seq, [{"role": "assistant", "content": text}],
                                fence=fence, step=seq)

    # Queued together (one commit): both land, in order.
    first, second = step(2, "two"), step(3, "three")
    await asyncio.gather(first, second)
    # One whose predecessor is missing is refused, and so is the one queued behind it,
    # in the same commit ...
    results = await asyncio.gather(step(5, "five"), step(6, "six"), return_exceptions=True)
    assert [type(r) for r in results] == [StoreError, StoreError]
    assert "message 4 is not stored" in str(results[0])
    # ... or in a later one.
    with pytest.raises(StoreError, match="message 6 is not stored"):
        await step(7, "seven")
    # A good step still lands after them.
    await step(4, "four")
    contents = [m["content"] for m in await store.load_messages(record.id)]
    assert contents == ["s", "work", "two", "three", "four"]
    stored = await store.get_task(record.id)
    assert stored is not None and stored.step == 4
