"""The people-in-the-loop families of the store, on both backends: an approval is
requested once per call and decided once whoever races, decisions are followed in
commit order; people are added once and found by their token's hash; agents made at run
time are created once, changed, removed with a tombstone, and counted per parent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wakeful.core.approvals import Approval, approval_key
from wakeful.core.people import Person, hash_token
from wakeful.core.stored_agents import StoredAgent
from wakeful.errors import WakefulError
from wakeful.store import Store, open_store
from wakeful.store.agent_definitions import stored_agents
from wakeful.store.approvals import approval_store
from wakeful.store.people import people_store


@pytest.fixture(params=["sqlite", "postgresql"])
async def two(request: pytest.FixtureRequest, tmp_path: Path
              ) -> AsyncIterator[tuple[Store, Store]]:
    """Two store objects on one database: two workers."""
    url = (f"sqlite:///{tmp_path / 'wakeful.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    first, second = open_store(url), open_store(url)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


def _approval(index: int) -> Approval:
    return Approval(id=f"ap_{index}", key=approval_key("t_1", 1, index), task_id="t_1",
                    agent="writer", tool="write_file", arguments='{"path": "a"}',
                    summary="write_file(a)", approvers=["person:ada"])


async def test_an_approval_is_requested_once_and_decided_once(two: tuple[Store, Store]
                                                              ) -> None:
    a, b = approval_store(two[0]), approval_store(two[1])
    results = await asyncio.gather(a.request(_approval(0)), b.request(_approval(0)))
    assert sorted(made for _, made in results) == [False, True]
    decided = await asyncio.gather(
        a.decide("ap_0", "approved", "person:ada", at=1.0),
        b.decide("ap_0", "denied", "person:bob", at=1.0, reason="no"))
    winners = [d for d in decided if d is not None]
    assert len(winners) == 1 and winners[0].decided_seq is not None
    stored = await b.get("ap_0")
    assert stored is not None and stored.state == winners[0].state
    for index in range(1, 6):
        await a.request(_approval(index))
    await asyncio.gather(*(b.decide(f"ap_{i}", "approved", "person:ada", at=2.0)
                           for i in range(1, 6)))
    followed = await a.decided_after(0)
    assert followed[0].id == "ap_0" and len(followed) == 6
    seqs = [x.decided_seq or 0 for x in followed]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert await a.last_seq() == seqs[-1]
    assert await a.decided_after(seqs[-1]) == []


async def test_people_are_added_once_and_found_by_token(two: tuple[Store, Store]) -> None:
    a, b = people_store(two[0]), people_store(two[1])
    await a.add(Person("ada", "operator"), hash_token("secret-ada-token"))
    with pytest.raises(WakefulError, match="already exists"):
        await b.add(Person("ada", "viewer"), hash_token("other"))
    found = await b.by_token(hash_token("secret-ada-token"))
    assert found is not None and (found.name, found.role) == ("ada", "operator")
    assert [p.name for p in await b.list()] == ["ada"]
    assert await b.remove("ada") and not await a.remove("ada")
    assert await a.by_token(hash_token("secret-ada-token")) is None


async def test_an_agent_made_at_run_time_is_created_once(two: tuple[Store, Store]) -> None:
    a, b = stored_agents(two[0]), stored_agents(two[1])
    child = StoredAgent("helper", {"name": "helper", "model": "m"}, "lead/t_1", "lead")
    made = await asyncio.gather(a.save(child, create=True), b.save(child, create=True),
                                return_exceptions=True)
    assert sum(isinstance(m, WakefulError) for m in made) == 1
    saved = next(m for m in made if isinstance(m, StoredAgent))
    assert saved.version == 1 and saved.removed_at is None
    changed = await b.save(StoredAgent("helper", {"name": "helper", "model": "n"},
                                       "person:ada"), create=False)
    assert changed.version == 2 and changed.definition["model"] == "n"
    assert await a.count_spawned("lead") == 1
    removed = await a.remove("helper", "cancel")
    assert removed is not None and removed.removed_at is not None
    assert await b.remove("helper", "cancel") is None
    assert await b.count_spawned("lead") == 0
    again = await b.save(child, create=True)
    assert again.removed_at is None and again.version == 4
