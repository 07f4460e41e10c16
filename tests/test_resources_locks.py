"""The lock protocol: leases, fencing tokens, renewal, expiry, and what survives."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from resources_support import call, context, events, ok, open_runtime, query
from wakeful.core.states import TaskState
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel
from wakeful.project.definitions import AgentDefinition


async def test_try_wait_release_and_growing_tokens(tmp_path: Path) -> None:
    async with open_runtime(tmp_path) as runtime:
        a, b = context(runtime, "t_1", "alice"), context(runtime, "t_2", "bob")
        first = await ok(runtime, a, "acquire_lock", resource="kv:plan")
        assert first["acquired"] and first["token"] == 1 and first["lease_s"] == 60
        again = await ok(runtime, a, "acquire_lock", resource="kv:plan")
        assert again["already_held"] and again["token"] == 1
        tried = await ok(runtime, b, "acquire_lock", resource="kv:plan")
        assert tried == {"acquired": False, "resource": "kv:plan", "mode": "write",
                         "blocked_by": ["kv:plan held by task t_1 (agent alice) with a write "
                                        "lock (token 1)"], "waited_s": 0.0}

        async def release_soon() -> None:
            await asyncio.sleep(0.3)
            await ok(runtime, a, "release_lock", resource="kv:plan")

        releaser = asyncio.create_task(release_soon())
        waited = await ok(runtime, b, "acquire_lock", resource="kv:plan", wait_s=10)
        await releaser
        assert waited["acquired"] and waited["token"] == 2 and 0.2 < waited["waited_s"] < 5
        # a bounded wait that runs out is an answer, not an error
        short = await ok(runtime, a, "acquire_lock", resource="kv:plan", wait_s=0.2)
        assert short["acquired"] is False and short["waited_s"] >= 0.2
        await ok(runtime, b, "release_lock", resource="kv:plan")
        third = await ok(runtime, a, "acquire_lock", resource="kv:plan")
        assert third["token"] == 3  # a request that was not granted used no token
        outcome = await call(runtime, b, "release_lock", resource="kv:plan")
        assert not outcome.ok and "holds no lock on kv:plan" in outcome.content
        for bad, message in [({"resource": "plan"}, "not of the form kind:name"),
                             ({"resource": "kv:x", "lease_s": 99999}, "at most 3600"),
                             ({"resource": "kv:x", "wait_s": 10_000}, "max_lock_wait_s"),
                             ({"resource": "kv:x", "mode": "exclusive"}, "mode")]:
            outcome = await call(runtime, b, "acquire_lock", **bad)
            assert not outcome.ok and message in outcome.content, outcome.content


async def test_read_locks_share_write_locks_exclude(tmp_path: Path) -> None:
    async with open_runtime(tmp_path) as runtime:
        a, b, c = (context(runtime, f"t_{i}") for i in (1, 2, 3))
        assert (await ok(runtime, a, "acquire_lock", resource="custom:db", mode="read"))["acquired"]
        assert (await ok(runtime, b, "acquire_lock", resource="custom:db", mode="read"))["acquired"]
        assert not (await ok(runtime, c, "acquire_lock", resource="custom:db"))["acquired"]
        outcome = await call(runtime, a, "acquire_lock", resource="custom:db", mode="write")
        assert "release the read lock first" in outcome.content
        # readers may read, nobody (not even a reader) may write without the write lock
        await ok(runtime, a, "acquire_lock", resource="kv:k", mode="read")
        assert (await call(runtime, b, "kv_get", key="k")).ok


async def test_a_stale_fencing_token_is_refused(tmp_path: Path) -> None:
    async with open_runtime(tmp_path) as runtime:
        slow, fast = context(runtime, "t_1", "slow"), context(runtime, "t_2", "fast")
        old = await ok(runtime, slow, "acquire_lock", resource="file:report.md", lease_s=0.3)
        await ok(runtime, slow, "write_file", path="report.md", content="v1 by slow",
                 fencing_token=old["token"])
        await asyncio.sleep(0.5)  # slow stalls past its lease...
        new = await ok(runtime, fast, "acquire_lock", resource="file:report.md", wait_s=5)
        assert new["token"] > old["token"]
        await ok(runtime, fast, "write_file", path="report.md", content="v2 by fast",
                 fencing_token=new["token"])
        # ...and wakes up to write with its old token: refused, naming who has it now
        late = await call(runtime, slow, "write_file", path="report.md", content="v1 again",
                          fencing_token=old["token"])
        assert not late.ok
        assert f"fencing token {old['token']} is stale for file:report.md" in late.content
        assert f"task t_2 (agent fast) holds it with token {new['token']}" in late.content
        # not passing the token does not help: the runtime knows the task's lock lapsed
        implicit = await call(runtime, slow, "append_file", path="report.md", text="sneak")
        assert not implicit.ok and "is stale" in implicit.content
        wrong = await call(runtime, fast, "kv_set", key="k", value=1, fencing_token=new["token"])
        assert not wrong.ok and "does not cover kv:k" in wrong.content
        assert (tmp_path / "workspace" / "report.md").read_text() == "v2 by fast"
        # once it lets go of the lapsed lock, the stale task is an ordinary writer again
        released = await ok(runtime, slow, "release_lock", resource="file:report.md")
        assert released["released"] is False and "already lapsed" in released["note"]
        await ok(runtime, fast, "release_lock", resource="file:report.md")
        await ok(runtime, slow, "append_file", path="report.md", text="after")
        await runtime.store.flush()
    stale = events(tmp_path / "wakeful.db", "resource.stale_token")
    assert [(e["task_id"], e["token"]) for e in stale][:2] == [("t_1", old["token"])] * 2
    expired = events(tmp_path / "wakeful.db", "resource.lock_expired")
    assert [e["token"] for e in expired] == [old["token"]]


async def test_renewal_keeps_a_lock_and_a_lapsed_lease_cannot_be_renewed(tmp_path: Path) -> None:
    async with open_runtime(tmp_path) as runtime:
        a, b = context(runtime, "t_1"), context(runtime, "t_2")
        got = await ok(runtime, a, "acquire_lock", resource="kv:plan", lease_s=0.6)
        for _ in range(3):
            await asyncio.sleep(0.3)
            renewed = await ok(runtime, a, "renew_lock", resource="kv:plan", lease_s=0.6)
            assert renewed["token"] == got["token"] and renewed["renewed"]
        # 0.9 s after the grant, past its first lease: still held, writes still accepted
        assert not (await ok(runtime, b, "acquire_lock", resource="kv:plan"))["acquired"]
        await ok(runtime, a, "kv_set", key="plan", value="mine", fencing_token=got["token"])
        await asyncio.sleep(0.8)
        lapsed = await call(runtime, a, "renew_lock", resource="kv:plan")
        assert not lapsed.ok and "cannot renew the lock on kv:plan" in lapsed.content
        assert (await ok(runtime, b, "acquire_lock", resource="kv:plan"))["acquired"]


async def test_a_lock_makes_others_wait_and_lets_its_holder_through(tmp_path: Path) -> None:
    async with open_runtime(tmp_path, auto_pause_timeout_s=5) as runtime:
        holder, other = context(runtime, "t_1", "holder"), context(runtime, "t_2", "other")
        await ok(runtime, holder, "acquire_lock", resource="file:docs", lease_s=30)
        blocked = asyncio.create_task(call(runtime, other, "write_file", path="docs/a.md",
                                           content="other"))
        await asyncio.sleep(0.3)
        assert not blocked.done()  # a lock on the folder covers the files in it
        await ok(runtime, holder, "write_file", path="docs/a.md", content="holder")
        await ok(runtime, other, "write_file", path="notes.md", content="elsewhere is free")
        assert (tmp_path / "workspace" / "docs" / "a.md").read_text() == "holder"
        await ok(runtime, holder, "release_lock", resource="file:docs")
        assert (await blocked).ok  # woken by the release
        assert (tmp_path / "workspace" / "docs" / "a.md").read_text() == "other"


async def test_a_lapsed_lease_frees_the_resource_for_the_next_in_line(tmp_path: Path) -> None:
    async with open_runtime(tmp_path) as runtime:
        a, b = context(runtime, "t_1"), context(runtime, "t_2")
        first = await ok(runtime, a, "acquire_lock", resource="custom:gpu", lease_s=0.5)
        started = time.monotonic()
        second = await ok(runtime, b, "acquire_lock", resource="custom:gpu", wait_s=10)
        assert second["acquired"] and second["token"] > first["token"]
        assert time.monotonic() - started > 0.3  # not before the lease lapsed
        await runtime.store.flush()
    [expired] = events(tmp_path / "wakeful.db", "resource.lock_expired")
    assert expired["token"] == first["token"] and expired["task_id"] == "t_1"


async def test_locks_survive_a_runtime_restart(tmp_path: Path) -> None:
    async with open_runtime(tmp_path) as runtime:
        held = await ok(runtime, context(runtime, "t_1", "a"), "acquire_lock",
                        resource="file:plan.md", lease_s=60)
    async with open_runtime(tmp_path) as runtime:
        listed = await ok(runtime, context(runtime, "t_9"), "list_locks")
        [lock] = listed["locks"]
        assert (lock["resource"], lock["token"], lock["task_id"]) == ("file:plan.md",
                                                                      held["token"], "t_1")
        assert 50 < lock["lease_left_s"] <= 60
        other = context(runtime, "t_2", "b")
        assert not (await ok(runtime, other, "acquire_lock", resource="file:plan.md"))["acquired"]
        # the resumed holder still holds it: its writes go through, fenced
        await ok(runtime, context(runtime, "t_1", "a"), "write_file", path="plan.md",
                 content="x", fencing_token=held["token"])
        await ok(runtime, context(runtime, "t_1", "a"), "release_lock", resource="file:plan.md")
        again = await ok(runtime, other, "acquire_lock", resource="file:plan.md")
        assert again["token"] > held["token"]  # tokens keep growing across restarts


async def test_a_task_that_ends_gives_up_its_locks(tmp_path: Path) -> None:
    models = ModelRegistry(tmp_path)
    models.register("scripted:forgetful", ScriptedModel.from_steps([
        {"say": "locking", "tool_calls": [{"tool": "acquire_lock", "args": {
            "resource": "kv:plan", "lease_s": 600}}]},
        {"say": "done, and I forgot to release"}]))
    agent = AgentDefinition(name="forgetful", model="scripted:forgetful",
                            tools=["acquire_lock"])
    async with open_runtime(tmp_path, agents=[agent], models=models) as runtime:
        task = await runtime.create_task("forgetful", "plan")
        assert (await runtime.wait_task(task.id, timeout=10)).state is TaskState.DONE
        deadline = time.monotonic() + 5
        while (await runtime.resources.view()).locks:
            assert time.monotonic() < deadline, "the lock outlived its task"
            await asyncio.sleep(0.02)
        got = await ok(runtime, context(runtime, "t_other"), "acquire_lock", resource="kv:plan")
        assert got["acquired"]
        await runtime.store.flush()
    [released] = events(tmp_path / "wakeful.db", "resource.lock_released")
    assert released["task_id"] == task.id and released["reason"] == "task done"


async def test_the_shared_scratchpad(tmp_path: Path) -> None:
    async with open_runtime(tmp_path) as runtime:
        a, b = context(runtime, "t_1", "a"), context(runtime, "t_2", "b")
        assert await ok(runtime, a, "kv_get", key="plan") == {"key": "plan", "found": False,
                                                             "value": None}
        assert (await ok(runtime, a, "kv_set", key="plan", value={"steps": [1, 2]}))["version"] == 1
        assert (await ok(runtime, b, "kv_set", key="plan", value={"steps": [3]}))["version"] == 2
        got = await ok(runtime, a, "kv_get", key="plan")
        assert got == {"key": "plan", "found": True, "value": {"steps": [3]}, "version": 2,
                       "updated_by": "b/t_2"}
        outcome = await call(runtime, a, "kv_set", key="x", value="y" * 200_000)
        assert not outcome.ok and "limit is 100000" in outcome.content
    assert query(tmp_path / "wakeful.db", "SELECT key, version FROM kv_entries") == [("plan", 2)]
