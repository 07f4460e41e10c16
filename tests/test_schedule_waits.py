"""Sleeping tasks and event waits on a real runtime: each kind of event, the first of
several, timeouts, cancellation, resuming after a restart with the time that was left,
and thousands of sleepers at once (10,000 in benchmarks/wake.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from schedule_support import (
    START,
    Factory,
    call,
    matching,
    steps,
    until,
    waiting,
)
from wakeful.core.conditions import AgentChanges, ResourceFree, TaskReaches, Who
from wakeful.core.states import AgentState, TaskState
from wakeful.project.definitions import AgentDefinition
from wakeful.resources import Access
from wakeful.runtime.runtime import Runtime
from wakeful.schedule.clock import FakeClock, RealClock
from wakeful.toolkit.context import ToolContext

WAIT_TOOLS = ["sleep_for", "sleep_until", "wait_for_event", "check_mail"]


def agent(name: str, model: str | None = None, **fields: Any) -> AgentDefinition:
    # answer_mail off: these agents' own tasks wait for people's mail (the responder
    # would otherwise answer it in tasks of its own).
    return AgentDefinition(name=name, model=model or name, tools=WAIT_TOOLS,
                           answer_mail=False, **fields)


def sleeper(tool: str, **args: Any) -> Any:
    """Calls ``tool`` once, then answers with what it woke up to."""
    return steps(call(tool, **args), {"say": "{last_tool_result}"})


async def woke(rt: Runtime, task_id: str) -> dict[str, Any]:
    record = await rt.wait_task(task_id, 10)
    assert record.state is TaskState.DONE, record.error
    result: dict[str, Any] = json.loads(record.result or "{}")
    return result


async def test_sleep_for_marks_the_task_waiting_and_wakes_with_why(
        make_runtime: Factory) -> None:
    clock = FakeClock(START)
    rt = await make_runtime([agent("napper")], {"napper": sleeper("sleep_for",
                                                                     duration="30m")},
                               clock=clock)
    task = await rt.create_task("napper", "nap")
    await waiting(rt, task.id)
    record = await rt.get_task(task.id)
    assert record.state is TaskState.WAITING
    info = rt.waits.waiting(task.id)
    assert info is not None and info.until == START + 1800
    assert info.what.startswith("sleeping until 2023-11-14T22:43:20Z (timer tm_")
    await clock.advance(1799)
    assert (await rt.get_task(task.id)).state is TaskState.WAITING
    await clock.advance(1)
    result = await woke(rt, task.id)
    assert result["woke"] == "timer" and result["slept_s"] == 1800
    assert result["message"].startswith("Woke up: timer tm_")
    # The reason is on record for `wakeful why` and the event log.
    states = await rt.store.query_events(task_id=task.id, types=["task.state"])
    assert any(e.data.get("reason", "").startswith("sleeping until") for e in states)
    woken = await rt.store.query_events(task_id=task.id, types=["task.woke"])
    assert woken[0].data["reason"] == "timer" and woken[0].data["late_ms"] == 0


async def test_sleep_until_a_local_time(make_runtime: Factory) -> None:
    clock = FakeClock(START)  # 22:13:20 UTC = 23:13:20 in Paris
    rt = await make_runtime(
        [agent("night")], {"night": sleeper("sleep_until", when="07:30",
                                            timezone="Europe/Paris")}, clock=clock)
    task = await rt.create_task("night", "sleep till morning")
    await waiting(rt, task.id)
    info = rt.waits.waiting(task.id)
    assert info is not None and info.until == START + (8 * 3600 + 16 * 60 + 40)
    await clock.advance(9 * 3600)
    assert (await woke(rt, task.id))["due"] == "2023-11-15T06:30:00Z"


async def test_wait_for_mail_wakes_on_matching_mail_and_leaves_it_to_read(
        make_runtime: Factory) -> None:
    clock = FakeClock(START)
    model = steps(call("wait_for_event", events=[{"kind": "mail", "sender": "person:ada",
                                                  "subject": "go"}]),
                  call("check_mail", ack=True),
                  {"say": "{last_tool_result}"})
    rt = await make_runtime([agent("listener")], {"listener": model}, clock=clock)
    task = await rt.create_task("listener", "wait for the signal")
    await waiting(rt, task.id)
    await rt.mailbox.send("person:bob", "listener", "go", "wrong sender")
    await rt.mailbox.send("person:ada", "listener", "later", "wrong subject")
    await asyncio.sleep(0.05)
    assert rt.waits.waiting(task.id) is not None
    sent = await rt.mailbox.send("person:ada", "listener", "Go now", "the signal")
    record = await rt.wait_task(task.id, 10)
    messages = [m["content"] for m in await rt.store.load_messages(task.id)
                if m["role"] == "tool"]
    wake = json.loads(messages[0])
    assert wake["woke"] == "event" and wake["event"]["mail_id"] == sent.id
    assert wake["event"]["from"] == "person:ada"
    assert sent.id in (record.result or "")  # still there for check_mail


async def test_wait_for_mail_already_waiting_wakes_at_once(make_runtime: Factory) -> None:
    rt = await make_runtime([agent("listener")], {"listener": sleeper(
        "wait_for_event", events=[{"kind": "mail"}])})
    await rt.mailbox.send("person:ada", "listener", "early", "already here")
    task = await rt.create_task("listener", "check")
    result = await woke(rt, task.id)
    assert result["event"] == {"kind": "mail", "pending": 1, "matching": ""}


async def test_wait_for_tasks_done_failed_and_finished(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    slow = steps(call("sleep_for", duration="10m"), {"say": "worked"})
    failing = steps({"say": "x", "error": "the model is down"})
    rt = await make_runtime(
        [agent("worker"), agent("breaker", restart={"policy": "never"}),
         agent("boss", model="boss")],
        {"worker": slow, "breaker": failing, "boss": matching({})}, clock=clock)
    work = await rt.create_task("worker", "work")
    await waiting(rt, work.id)
    boss = rt.waits
    done = asyncio.create_task(boss.wait(Who("boss"), [TaskReaches(work.id, "done")]))
    finished = asyncio.create_task(boss.wait(Who("boss"), [TaskReaches(work.id)]))
    await asyncio.sleep(0.05)
    assert not done.done() and not finished.done()
    await clock.advance(600)
    assert (await asyncio.wait_for(done, 10)).event == {
        "kind": "task", "task_id": work.id, "agent": "worker", "state": "done"}
    assert (await asyncio.wait_for(finished, 10)).event["state"] == "done"  # type: ignore[index]
    broken = await rt.create_task("breaker", "break")
    failed = await asyncio.wait_for(boss.wait(Who("boss"), [TaskReaches(broken.id, "failed")]),
                                    10)
    assert failed.event is not None and failed.event["state"] == "failed"
    # Already finished: at once.
    again = await boss.wait(Who("boss"), [TaskReaches(work.id)])
    assert again.reason == "event" and again.event["state"] == "done"  # type: ignore[index]


async def test_wait_for_an_agent_to_change_state(make_runtime: Factory) -> None:
    rt = await make_runtime([agent("a"), agent("b")], {"a": steps({"say": "hi"}),
                                                          "b": steps({"say": "hi"})})
    any_change = asyncio.create_task(rt.waits.wait(Who("a"), [AgentChanges("b")]))
    paused = asyncio.create_task(rt.waits.wait(Who("a"), [AgentChanges("b", "paused")]))
    await asyncio.sleep(0.05)
    await rt.sleep_agent("b", "a nap")
    first = await asyncio.wait_for(any_change, 5)
    assert first.event == {"kind": "agent", "agent": "b", "from": "running", "to": "sleeping",
                           "reason": "a nap"}
    assert not paused.done()
    await rt.pause_agent("b")
    assert (await asyncio.wait_for(paused, 5)).event["to"] == "paused"  # type: ignore[index]


async def test_wait_for_a_resource_to_come_free(make_runtime: Factory) -> None:
    rt = await make_runtime([agent("holder"), agent("waiter")],
                               {"holder": steps({"say": "hi"}), "waiter": sleeper(
                                   "wait_for_event",
                                   events=[{"kind": "resource", "resource": "kv:plan"}])},
                               clock=RealClock())
    owner = ToolContext("holder", "t_holder", rt)
    lock = await rt.resources.acquire(owner, "kv:plan", "write", lease_s=30)
    assert lock.acquired
    task = await rt.create_task("waiter", "wait for the plan")
    await waiting(rt, task.id)
    await asyncio.sleep(0.1)
    assert (await rt.get_task(task.id)).state is TaskState.WAITING
    started = time.monotonic()
    await rt.resources.release(owner, "kv:plan")
    result = await woke(rt, task.id)
    assert result["event"] == {"kind": "resource", "resource": "kv:plan"}
    assert time.monotonic() - started < 2.0  # woken by the release, not by a poll
    # Busy with a short operation (auto-pause), then free: woken as the operation ends.
    printer = Who("waiter")
    async with rt.resources.guard(owner, [Access.write("custom:printer")]):
        waiter = asyncio.create_task(rt.waits.wait(printer, [ResourceFree("custom:printer")]))
        await asyncio.sleep(0.1)
        assert not waiter.done()
    assert (await asyncio.wait_for(waiter, 5)).event == {"kind": "resource",
                                                          "resource": "custom:printer"}
    # Free already: at once.
    again = await rt.create_task("waiter", "again")
    assert (await woke(rt, again.id))["event"]["resource"] == "kv:plan"


async def test_first_of_several_events_wins_and_the_rest_are_dropped(
        make_runtime: Factory) -> None:
    clock = FakeClock(START)
    other = steps(call("sleep_for", duration="1h"), {"say": "late"})
    rt = await make_runtime(
        [agent("other"), agent("watcher")],
        {"other": other, "watcher": matching({})}, clock=clock)
    slow = await rt.create_task("other", "take long")
    await waiting(rt, slow.id)
    model = sleeper("wait_for_event", events=[
        {"kind": "task", "task_id": slow.id}, {"kind": "mail", "sender": "person:ada"},
        {"kind": "agent", "agent": "other", "state": "paused"}], timeout="2h")
    rt.models.register("watcher2", model)
    await rt.add_agent(agent("watcher2", model="watcher2"))
    task = await rt.create_task("watcher2", "whichever first")
    await waiting(rt, task.id)
    info = rt.waits.waiting(task.id)
    assert info is not None and info.what.startswith(
        f"waiting for task {slow.id} finished or mail from person:ada or agent other paused; "
        "timeout at 2023-11-15T00:13:20Z (timer tm_")
    await rt.mailbox.send("person:ada", "watcher2", "ping", "first")
    result = await woke(rt, task.id)
    assert result["woke"] == "event" and result["event"]["kind"] == "mail"
    assert not rt.waits._tasks and not rt.waits._agents and not rt.waits._mail
    # Its timeout timer ended with it: it never fires.
    assert [t for t in rt.scheduler.of_task(task.id)] == []


async def test_timeout_wakes_with_timeout(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    rt = await make_runtime([agent("patient")], {"patient": sleeper(
        "wait_for_event", events=[{"kind": "mail", "subject": "never"}], timeout="10m")},
        clock=clock)
    task = await rt.create_task("patient", "wait a bit")
    await waiting(rt, task.id)
    await clock.advance(600)
    result = await woke(rt, task.id)
    assert result["woke"] == "timeout"
    assert result["message"].startswith("Woke up: the wait for mail about 'never' timed out")


async def test_cancelling_a_sleeping_task_cancels_its_timer(make_runtime: Factory) -> None:
    clock = FakeClock(START)
    rt = await make_runtime([agent("napper")], {"napper": sleeper("sleep_for",
                                                                     duration="1h")},
                               clock=clock)
    task = await rt.create_task("napper", "nap")
    await waiting(rt, task.id)
    [timer] = rt.scheduler.of_task(task.id)
    record = await rt.cancel_task(task.id)
    assert record.state is TaskState.CANCELLED
    assert rt.waits.waiting(task.id) is None and rt.scheduler.of_task(task.id) == []
    await rt.store.flush()
    assert await rt.scheduler.store.get(timer.id) is None  # ended with its task, and gone
    await clock.advance(7200)
    assert (await rt.get_task(task.id)).state is TaskState.CANCELLED


async def test_a_resumed_task_sleeps_only_the_time_that_was_left(
        make_runtime: Factory, tmp_path: Any) -> None:
    clock = FakeClock(START)
    model = {"napper": sleeper("sleep_for", duration="10m")}
    rt = await make_runtime([agent("napper")], model, clock=clock)
    task = await rt.create_task("napper", "nap")
    await waiting(rt, task.id)
    await clock.advance(4 * 60)
    await rt.stop()  # the task goes back to the queue, its timer stays in the store
    back = await make_runtime([agent("napper")], model, clock=clock)
    await waiting(back, task.id)
    info = back.waits.waiting(task.id)
    assert info is not None and info.until == START + 600  # not 4 + 10 minutes
    await clock.advance(6 * 60 - 1)
    assert (await back.get_task(task.id)).state is TaskState.WAITING
    await clock.advance(1)
    result = await woke(back, task.id)
    assert result["slept_s"] == 600 and result["due"] == "2023-11-14T22:23:20Z"
    await back.store.flush()
    assert len(await back.store.query_events(task_id=task.id, types=["task.woke"])) == 1
    # The task is done: its wait row has done its job and is gone.
    assert await back.scheduler.store.listing(task_id=task.id, include_ended=True) == []


async def test_a_wait_that_ended_before_a_restart_is_not_repeated(
        make_runtime: Factory) -> None:
    clock = FakeClock(START)
    # One step: sleep, then wait for a mail. Stopped during the second wait: the sleep's
    # result was stored as it ended (durable steps), so the resumed task runs only the
    # wait for mail, and neither the model nor sleep_for is called again.
    model = {"napper": steps(
        {"say": "nap, then wait", "tool_calls": [
            {"tool": "sleep_for", "args": {"duration": "10m"}},
            {"tool": "wait_for_event", "args": {"events": [{"kind": "mail"}]}}]},
        {"say": "done"})}
    rt = await make_runtime([agent("napper")], model, clock=clock)
    task = await rt.create_task("napper", "nap")
    await waiting(rt, task.id)
    await clock.advance(600)
    await until(lambda: (w := rt.waits.waiting(task.id)) is not None
                and w.what.startswith("waiting for mail"), 5, "the second wait")
    await rt.stop()
    back = await make_runtime([agent("napper")], model, clock=clock)
    await until(lambda: (w := back.waits.waiting(task.id)) is not None
                and w.what.startswith("waiting for mail"), 5, "the second wait again")
    assert clock.now() == START + 600  # it did not sleep again
    await back.mailbox.send("person:ada", "napper", "here", "the mail")
    assert (await back.wait_task(task.id, 10)).state is TaskState.DONE
    messages = await back.store.load_messages(task.id)
    slept = json.loads(next(m["content"] for m in messages if m["role"] == "tool"))
    assert slept["woke"] == "timer" and "resumed" not in slept
    assert [m["content"] for m in messages if m["role"] == "assistant"] == [
        "nap, then wait", "done"]
    assert sum(1 for m in messages if m["role"] == "tool") == 2


async def test_bad_waits_are_tool_errors(make_runtime: Factory) -> None:
    model = steps(call("wait_for_event", events=[{"kind": "task", "task_id": "t_nope"}]),
                  call("wait_for_event", events=[{"kind": "weather"}]),
                  call("wait_for_event", events=[{"kind": "agent", "agent": "ghost"}]),
                  call("sleep_for", duration="soon"),
                  {"say": "ok"})
    rt = await make_runtime([agent("confused")], {"confused": model})
    task = await rt.create_task("confused", "try")
    await rt.wait_task(task.id, 10)
    errors = [m["content"] for m in await rt.store.load_messages(task.id) if m["role"] == "tool"]
    assert "unknown task 't_nope'" in errors[0]
    assert "events.0" in errors[1] and "weather" in errors[1]
    assert "unknown agent 'ghost'" in errors[2]
    assert "expected a duration" in errors[3]


async def test_agent_asleep_until_an_event(make_runtime: Factory) -> None:
    rt = await make_runtime([agent("a"), agent("b")], {"a": steps({"say": "x"}),
                                                          "b": steps({"say": "x"})})
    await rt.sleep_agent("a", "until b is paused", wake_on=[AgentChanges("b", "paused")])
    assert rt.agent("a").state is AgentState.SLEEPING
    await rt.pause_agent("b")
    await until(lambda: rt.agent("a").state is AgentState.RUNNING, 5, "a to wake")
    assert rt.agent("a").record.reason in ("woken: agent b went from running to paused",
                                           "woken: agent b is paused")


@pytest.mark.slow
async def test_thousands_of_sleepers_all_wake_on_time(make_runtime: Factory) -> None:
    # 2,000 here on both stores (10,000 in benchmarks/wake.py, which times them).
    clock = FakeClock(START)
    n, agents = 2_000, 10
    minutes = 5
    model = steps(call("sleep_for", duration="{instruction}"), {"say": "up"})
    defs = [AgentDefinition(name=f"s{i}", model="sleepy", tools=["sleep_for"],
                            max_concurrent_tasks=n) for i in range(agents)]
    rt = await make_runtime(defs, {"sleepy": model}, clock=clock)
    # Sleeper k sleeps (k % 5 + 1) minutes: 400 wake at each minute mark.
    await asyncio.gather(*(rt.create_task(f"s{k % agents}", f"{k % minutes + 1}m")
                           for k in range(n)))
    await until(lambda: rt.waits.sleepers() == n, 120, "every task asleep")
    assert rt.scheduler._loop is not None and len(rt.scheduler.active()) == n
    for minute in range(1, minutes + 1):
        await clock.advance(60)
        await until(lambda m=minute: rt.waits.sleepers() == n - m * n // minutes, 60,  # type: ignore[misc]
                    f"the sleepers of minute {minute} to wake")
    async def all_done() -> bool:
        counts = await rt.store.count_tasks()
        return sum(c for (_, state), c in counts.items() if state is TaskState.DONE) == n

    await until(all_done, 120, "every woken task to finish")
    await rt.store.flush()
    woken = await rt.store.query_events(types=["task.woke"], limit=2 * n)
    # One wake-up per task, on time. (A task resumed after its worker lost the agent's
    # lease, as a loaded machine can make it, finds its wait over and records that
    # again, marked resumed.)
    first = [e for e in woken if not e.data.get("resumed")]
    assert len(first) == n and len({e.task_id for e in first}) == n
    assert {e.data["late_ms"] for e in first} == {0}


async def test_shutdown_with_sleepers_leaves_nothing_running_and_loses_nothing(
        make_runtime: Factory) -> None:
    clock = FakeClock(START)
    defs = [AgentDefinition(name="napper", model="napper", tools=["sleep_for",
                                                                  "wait_for_event"],
                            max_concurrent_tasks=500),
            AgentDefinition(name="sleepy", model="napper")]
    napper = matching({"mail": [call("wait_for_event", events=[{"kind": "mail"}],
                                     timeout="1h"), {"say": "up"}]},
                      fallback=[call("sleep_for", duration="1h"), {"say": "up"}])
    before = set(asyncio.all_tasks())
    rt = await make_runtime(defs, {"napper": napper}, clock=clock, start=False)
    await rt.start()
    await rt.sleep_agent("sleepy", "resting", until=START + 60,
                         wake_on=[AgentChanges("napper", "paused")])
    tasks = [await rt.create_task("napper", "nap" if i % 2 else "mail") for i in range(200)]
    await until(lambda: rt.waits.sleepers() == 200, 30, "every task asleep")
    await rt.stop()  # returns without the hour-long sleeps ending (the fake clock stands)
    assert set(asyncio.all_tasks()) - before == set()  # no task outlives the runtime
    # Nothing lost: the tasks wait in the queue, and their waits in the store.
    again = await make_runtime(defs, {"napper": napper}, clock=clock)
    stored = await again.scheduler.store.listing(include_ended=False)
    assert sum(1 for t in stored if t.action == "wake_task") == 200
    assert sum(1 for t in stored if t.action == "wake_agent") == 1
    await until(lambda: again.waits.sleepers() == 200, 30, "every task asleep again")
    await clock.advance(3600)
    await again.wait_idle(30)
    assert {(await again.get_task(t.id)).state for t in tasks} == {TaskState.DONE}
    assert again.agent("sleepy").state is AgentState.RUNNING  # its timer fired at 60 s
