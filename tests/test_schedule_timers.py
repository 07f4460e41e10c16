"""Durable timers on a real runtime and real SQLite, driven by a fake clock: schedules
from agent files, cron in a time zone, one-shots, misfires after a restart, exactly-once
firing across two runtimes, the schedule tools, and agents asleep until a timer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from schedule_support import (
    START,
    Factory,
    call,
    matching,
    steps,
    tasks_of,
    until,
)
from wakeful.core.states import AgentState, TaskState
from wakeful.core.timespecs import TimerSpec, stamp
from wakeful.project.definitions import AgentDefinition, ScheduleEntry
from wakeful.runtime.runtime import Runtime
from wakeful.schedule.clock import FakeClock, RealClock


def agent(name: str, *entries: ScheduleEntry, model: str = "done", **fields: object
          ) -> AgentDefinition:
    return AgentDefinition(name=name, model=model, schedule=list(entries),
                           **fields)  # type: ignore[arg-type]


def done_model() -> dict[str, object]:
    return {"done": steps({"say": "checked"})}


async def fired_dues(rt: Runtime, count: int) -> list[str]:
    """The due times fired (one per run), from the event log, once ``count`` are there
    (commit-ordered reads may show a just committed event a moment later)."""
    await rt.store.flush()
    dues: list[str] = []

    async def logged() -> bool:
        dues[:] = [e.data["due"] for e in await rt.store.query_events(
            types=["timer.fired"], limit=100_000) for _ in range(e.data["runs"])]
        return len(dues) >= count

    await until(logged, 10, f"{count} firings in the event log")
    return dues


async def test_every_30_minutes_runs_in_milliseconds(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    rt = await make_runtime(
        [agent("watcher", ScheduleEntry(every="30m", instruction="check the team"))],
        done_model(), clock=clock)
    [timer] = [t for t in rt.scheduler.active() if t.agent == "watcher"]
    assert timer.next_due == START + 1800 and timer.created_by == "agent-file"
    await clock.advance(29 * 60)
    assert await tasks_of(rt) == []
    await clock.advance(3 * 3600 - 29 * 60)  # three hours in all
    await rt.wait_idle(10)
    created = await tasks_of(rt, "watcher")
    assert len(created) == 6
    assert {t.created_by for t in created} == {"schedule"}
    assert {t.cause_id for t in created} == {timer.id}
    assert {t.state for t in created} == {TaskState.DONE}
    assert await fired_dues(rt, 6) == [stamp(START + 1800 * k) for k in range(1, 7)]
    assert timer.fired == 6 and timer.next_due == START + 7 * 1800


async def test_cron_in_a_time_zone_fires_at_local_nine_on_weekdays(
        make_runtime: Factory) -> None:
    # Monday 2025-03-03 06:00 UTC = 07:00 in Paris (CET, UTC+1).
    clock = FakeClock(datetime.fromisoformat("2025-03-03T06:00:00+00:00").timestamp())
    rt = await make_runtime(
        [agent("standup", ScheduleEntry(cron="0 9 * * 1-5", timezone="Europe/Paris",
                                        instruction="morning check"))],
        done_model(), clock=clock)
    await clock.advance(7 * 86400)  # one week
    await rt.wait_idle(10)
    assert len(await tasks_of(rt, "standup")) == 5  # Monday to Friday
    assert await fired_dues(rt, 5) == [
        f"2025-03-0{d}T08:00:00Z" for d in (3, 4, 5, 6, 7)]  # 09:00 Paris


async def test_one_shot_fires_once_and_ends(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    rt = await make_runtime(
        [agent("once", ScheduleEntry(at=datetime.fromtimestamp(START + 3600, UTC),
                                     instruction="launch"))],
        done_model(), clock=clock)
    await clock.advance(3599)
    assert await tasks_of(rt) == []
    await clock.advance(10 * 86400)
    await rt.wait_idle(10)
    assert len(await tasks_of(rt, "once")) == 1
    assert [t for t in rt.scheduler.active() if t.agent == "once"] == []
    [row] = await rt.scheduler.store.listing(agent="once", include_ended=True)
    assert (row.state, row.fired) == ("done", 1)


async def test_max_runs_ends_a_schedule(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    rt = await make_runtime(
        [agent("few", ScheduleEntry(every="1m", max_runs=3, instruction="ping"))],
        done_model(), clock=clock)
    await clock.advance(3600)
    await rt.wait_idle(10)
    assert len(await tasks_of(rt, "few")) == 3


async def test_agent_file_schedules_register_once_and_follow_edits(
        make_runtime: Factory) -> None:
    clock = FakeClock(START)
    first = ScheduleEntry(every="1h", instruction="hourly")
    rt = await make_runtime([agent("a", first)], done_model(), clock=clock)
    [timer] = [t for t in rt.scheduler.active() if t.agent == "a"]
    await rt.stop()
    again = await make_runtime([agent("a", first)], done_model(), clock=clock)
    assert [t.id for t in again.scheduler.active() if t.agent == "a"] == [timer.id]
    await again.stop()
    edited = ScheduleEntry(every="2h", instruction="hourly")
    third = await make_runtime([agent("a", edited)], done_model(), clock=clock)
    [new] = [t for t in third.scheduler.active() if t.agent == "a"]
    assert new.id != timer.id and new.spec == "7200.0"
    old = await third.scheduler.store.get(timer.id)
    assert old is not None and old.state == "cancelled"
    assert "removed from the file" in (old.outcome or "")


async def test_misfire_policies_after_a_restart(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    defs = [agent(p, ScheduleEntry(every="10m", misfire=p, instruction=f"{p} run"))
            for p in ("once", "skip", "all")]
    rt = await make_runtime(defs, done_model(), clock=clock)
    await clock.advance(10 * 60)  # each fires once, on time
    await rt.wait_idle(10)
    await rt.stop()
    await clock.advance(45 * 60)  # down for 45 minutes: 4 runs missed (20, 30, 40, 50)
    back = await make_runtime(defs, done_model(), clock=clock)
    await clock.advance(0)
    await back.wait_idle(10)
    counts = {p: len(await tasks_of(back, p)) for p in ("once", "skip", "all")}
    assert counts == {"once": 2, "skip": 1, "all": 5}
    # All three carry on from the next due time, on the same 10-minute grid.
    nexts = {t.agent: t.next_due for t in back.scheduler.active()}
    assert nexts == {p: START + 60 * 60 for p in ("once", "skip", "all")}
    await clock.advance(5 * 60)
    await back.wait_idle(10)
    assert {p: len(await tasks_of(back, p)) for p in counts} == {
        "once": 3, "skip": 2, "all": 6}


async def test_two_runtimes_on_one_store_fire_each_due_time_exactly_once(
        make_runtime: Factory) -> None:
    defs = [agent("pinger", ScheduleEntry(every="100ms", max_runs=12, instruction="ping"))]
    clock = RealClock()
    # Both register the same agent file: one timer, known to both; each races the other.
    a = await make_runtime(defs, done_model(), clock=clock, poll_interval_s=60)
    b = await make_runtime(defs, done_model(), clock=clock, poll_interval_s=60)
    assert [t.id for t in a.scheduler.active()] == [t.id for t in b.scheduler.active()]

    async def fired() -> bool:
        return (a.scheduler.fired + b.scheduler.fired) >= 12

    await until(fired, 20, "12 firings")
    await asyncio.sleep(0.3)
    await a.wait_idle(10)
    await b.wait_idle(10)
    assert a.scheduler.fired + b.scheduler.fired == 12
    assert len(await tasks_of(a, "pinger")) == 12
    await b.store.flush()
    dues = await fired_dues(a, 12)
    assert len(dues) == 12 and len(set(dues)) == 12


async def test_schedule_tools_set_list_and_cancel(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    planner = matching({"garden": [
        call("set_schedule", instruction="water the plants", every="2h"),
        call("list_schedules"),
        call("set_schedule", instruction="meddle", every="1h", agent="gardener"),
        {"say": "scheduled: {last_tool_result}"}]})
    rt = await make_runtime(
        [agent("planner", model="planner",
               tools=["set_schedule", "list_schedules", "cancel_schedule"]),
         agent("gardener")],
        {"planner": planner, **done_model()}, clock=clock)
    task = await rt.create_task("planner", "plan the garden")
    record = await rt.wait_task(task.id, 10)
    assert record.state is TaskState.DONE
    assert "may not set a schedule of agent 'gardener'" in (record.result or "")
    [timer] = [t for t in rt.scheduler.active() if t.agent == "planner"]
    assert timer.instruction == "water the plants" and timer.created_by.startswith("planner/")
    await clock.advance(5 * 3600)
    await rt.wait_idle(10)
    assert len([t for t in await tasks_of(rt, "planner") if t.created_by == "schedule"]) == 2
    canceller = steps(call("cancel_schedule", timer_id=timer.id), {"say": "{last_tool_result}"})
    rt.models.register("canceller", canceller)
    await rt.add_agent(agent("canceller", model="canceller", tools=["cancel_schedule"],
                             can_watch=["planner"]))
    done = await rt.wait_task((await rt.create_task("canceller", "stop it")).id, 10)
    assert '"state": "cancelled"' in (done.result or "")
    await clock.advance(10 * 3600)
    await rt.wait_idle(10)
    assert len([t for t in await tasks_of(rt, "planner") if t.created_by == "schedule"]) == 2
    denied = await rt.store.query_events(types=["monitor.access_denied"])
    assert denied and denied[0].data["target"] == "gardener"


async def test_sleeping_agent_wakes_at_its_timer_and_by_its_schedule(
        make_runtime: Factory) -> None:
    clock = FakeClock(START)
    rt = await make_runtime(
        [agent("night", ScheduleEntry(every="1h", instruction="wake and check")),
         agent("nap")], done_model(), clock=clock)
    await rt.sleep_agent("nap", "resting", until=START + 600)
    assert rt.agent("nap").state is AgentState.SLEEPING
    assert "until 2023-11-14T22:23:20Z" in rt.agent("nap").record.reason
    await rt.sleep_agent("night", "off duty")
    task = await rt.create_task("nap", "after the nap")
    await asyncio.sleep(0.05)
    assert (await rt.get_task(task.id)).state is TaskState.QUEUED  # held while asleep
    await clock.advance(600)
    assert rt.agent("nap").state is AgentState.RUNNING
    assert rt.agent("nap").record.reason.startswith("woken by timer tm_")
    assert (await rt.wait_task(task.id, 10)).state is TaskState.DONE
    await clock.advance(3000)  # the hourly schedule comes due and wakes "night"
    await rt.wait_idle(10)
    assert rt.agent("night").state is AgentState.RUNNING
    assert "woken by schedule" in rt.agent("night").record.reason
    assert len(await tasks_of(rt, "night")) == 1
    # Woken early by a person: the wake-up timer is cancelled.
    await rt.sleep_agent("nap", "resting", until=clock.now() + 600)
    await rt.wake_agent("nap", "a person woke it")
    assert [t for t in rt.scheduler.active() if t.action == "wake_agent"] == []
    # Put to sleep again while asleep: the new wake-up replaces the old one.
    await rt.sleep_agent("nap", "resting", until=clock.now() + 600)
    await rt.sleep_agent("nap", "a longer rest", until=clock.now() + 1200)
    [timer] = [t for t in rt.scheduler.active() if t.action == "wake_agent"]
    assert timer.next_due == clock.now() + 1200
    assert rt.agent("nap").record.reason.startswith("a longer rest (until ")
    await clock.advance(600)
    assert rt.agent("nap").state is AgentState.SLEEPING
    await clock.advance(600)
    assert rt.agent("nap").state is AgentState.RUNNING


async def test_agent_asleep_across_a_restart_wakes_when_its_time_has_passed(
        make_runtime: Factory) -> None:
    clock = FakeClock(START)
    rt = await make_runtime([agent("nap")], done_model(), clock=clock)
    await rt.sleep_agent("nap", "resting", until=START + 600)
    await rt.stop()
    await clock.advance(3600)  # due while no runtime ran
    back = await make_runtime([agent("nap")], done_model(), clock=clock)
    await clock.advance(0)
    await until(lambda: back.agent("nap").state is AgentState.RUNNING, 5, "the agent to wake")


async def test_bad_timers_are_refused_clearly(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    bad = steps(call("set_schedule", instruction="x", every="1h", cron="0 9 * * *"),
                call("set_schedule", instruction="x", cron="0 25 * * *"),
                call("set_schedule", instruction="x", every="1h", timezone="Nowhere/City"),
                call("list_schedules"),
                call("set_schedule", instruction="x", at="tomorrow-ish"),
                call("cancel_schedule", timer_id="tm_nope"),
                {"say": "done"})
    rt = await make_runtime([agent("b", model="bad", tools=[
        "set_schedule", "cancel_schedule", "list_schedules"])],
                               {"bad": bad}, clock=clock)
    task = await rt.create_task("b", "try")
    assert (await rt.wait_task(task.id, 10)).state is TaskState.DONE
    messages = [m["content"] for m in await rt.store.load_messages(task.id)
                if m["role"] == "tool"]
    assert "exactly one of 'every', 'cron' or 'at'" in messages[0]
    assert "not a valid cron line: '0 25 * * *'" in messages[1]
    assert "unknown time zone 'Nowhere/City'" in messages[2]
    assert messages[3] == "[]"
    assert "'tomorrow-ish' is not an ISO 8601 date-time" in messages[4]
    assert "no schedule with id 'tm_nope'" in messages[5]
    assert [t for t in rt.scheduler.active() if t.agent == "b"] == []
    assert TimerSpec.every("1h", anchor=0).describe() == "every 1h"


async def test_a_timer_cancelled_while_the_store_is_read_stays_cancelled(
        make_runtime: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Found under load on PostgreSQL: the doorbell of a new timer made the scheduler
    # read the store's active timers; the timer was cancelled (the agent woken) while
    # that read was under way, and the read brought it back as active in memory.
    clock = FakeClock(START)
    rt = await make_runtime([agent("nap")], done_model(), clock=clock)
    scheduler = rt.scheduler
    timer = await scheduler.add(TimerSpec.at(START + 600), "wake_agent", agent="nap")
    store = scheduler.store
    read, release = asyncio.Event(), asyncio.Event()
    original = store.active

    async def slow_read() -> list[Any]:
        rows = await original()  # the timer is still active when the rows are read
        read.set()
        await release.wait()
        return rows

    monkeypatch.setattr(store, "active", slow_read)
    refresh = asyncio.create_task(scheduler._read_new())
    await read.wait()
    await scheduler.cancel(timer.id, "the agent was woken")
    release.set()
    assert await refresh == []
    assert [t for t in scheduler.active() if t.id == timer.id] == []
    # A timer added elsewhere and read afterwards still joins the table.
    monkeypatch.setattr(store, "active", original)
    other = await scheduler.add(TimerSpec.at(START + 900), "wake_agent", agent="nap")
    scheduler._forget(other)  # as if another process had added it
    # On PostgreSQL the new timer's doorbell also makes the scheduler's own watcher read
    # the store, and that read may take the timer first, or overlap this one (a timer
    # forgotten during a read is left out of it). Either way it must join within a few
    # reads: the set of timers ended during reads empties once no read is under way.
    for _ in range(50):
        for found in await scheduler._read_new():
            scheduler._remember(found)
        if scheduler.get(other.id) is not None:
            break
    assert scheduler.get(other.id) is not None
