"""Streamed tokens are coalesced at the source, per task, without losing text or order."""

from __future__ import annotations

import asyncio

from wakeful.core.records import Event
from wakeful.observe.events import EventLog


async def test_a_burst_of_tokens_goes_out_as_one_event_per_task() -> None:
    log = EventLog()
    heard: list[Event] = []
    log.add_listener(heard.append)
    with log.subscribe() as feed:
        for word in ("a ", "b ", "c"):
            log.emit("model.token", agent="w", task_id="t1", data={"text": word}, persist=False)
            log.emit("model.token", agent="x", task_id="t2", data={"text": word.upper()},
                     persist=False)
        assert feed.get_nowait() is None, "tokens went out one by one"
        first = await feed.get()  # after the interval, without another event to push it
        second = feed.get_nowait()
        assert second is not None and feed.get_nowait() is None
    assert [(e.task_id, e.data) for e in (first, second)] == [
        ("t1", {"text": "a b c", "count": 3}), ("t2", {"text": "A B C", "count": 3})]
    assert heard == [first, second]  # listeners (sinks) get the same two events


async def test_a_tasks_tokens_go_out_before_its_next_event() -> None:
    log = EventLog()
    with log.subscribe() as feed:
        log.emit("model.token", agent="w", task_id="t1", data={"text": "Hel"}, persist=False)
        log.emit("model.token", agent="w", task_id="t1", data={"text": "lo"}, persist=False)
        log.emit("model.token", agent="x", task_id="t2", data={"text": "other"}, persist=False)
        log.emit("model.call", agent="w", task_id="t1", data={"step": 1})
        # Written by a store and published after (the task loop's state changes).
        log.publish(log.make("model.token", agent="w", task_id="t1",
                             data={"text": "!", "count": 1}))
        log.emit("model.token", agent="w", task_id="t1", data={"text": " again"},
                 persist=False)
        log.publish(log.make("task.state", agent="w", task_id="t1", data={"to": "done"}))
        seen = []
        while (event := feed.get_nowait()) is not None:
            seen.append((event.type, event.task_id, event.data.get("text")))
        assert seen == [("model.token", "t1", "Hello"), ("model.call", "t1", None),
                        ("model.token", "t1", "!"), ("model.token", "t1", " again"),
                        ("task.state", "t1", None)]
        late = await feed.get()  # the other task's tokens wait for the interval
        assert (late.task_id, late.data) == ("t2", {"text": "other", "count": 1})


async def test_a_token_published_as_it_is_goes_out_after_the_tokens_held() -> None:
    log = EventLog()
    with log.subscribe() as feed:
        log.emit("model.token", agent="w", task_id="t1", data={"text": "a"}, persist=False)
        log.publish(log.make("model.token", agent="w", task_id="t1",
                             data={"text": "b", "count": 1}))
        texts = [feed.get_nowait(), feed.get_nowait()]
    assert [e.data["text"] for e in texts if e is not None] == ["a", "b"]


def test_without_an_event_loop_each_token_goes_out_at_once() -> None:
    log = EventLog()
    with log.subscribe() as feed:
        log.emit("model.token", agent="w", task_id="t1", data={"text": "a"}, persist=False)
        event = feed.get_nowait()
    assert event is not None and event.data == {"text": "a", "count": 1}


async def test_coalescing_can_be_turned_off() -> None:
    log = EventLog()
    log.token_interval_s = 0
    with log.subscribe() as feed:
        for word in ("a", "b"):
            log.emit("model.token", agent="w", task_id="t1", data={"text": word},
                     persist=False)
        texts = [feed.get_nowait(), feed.get_nowait()]
    assert [e.data["text"] for e in texts if e is not None] == ["a", "b"]


def test_tokens_held_when_an_event_loop_ended_go_out_on_the_next_one() -> None:
    """An event log can outlive an event loop (a CLI command, a test): the timer set on
    the first loop never fires, so what it held must not wait for it."""
    log = EventLog()
    with log.subscribe() as feed:
        async def first() -> None:
            log.emit("model.token", agent="w", task_id="t1", data={"text": "a"}, persist=False)

        async def second() -> list[Event]:
            log.emit("model.token", agent="w", task_id="t2", data={"text": "b"}, persist=False)
            return [await feed.get(), await feed.get()]

        asyncio.run(first())  # ends before the interval: its timer never fires
        stale, fresh = asyncio.run(second())
    assert (stale.task_id, stale.data["text"]) == ("t1", "a")
    assert (fresh.task_id, fresh.data["text"]) == ("t2", "b")
