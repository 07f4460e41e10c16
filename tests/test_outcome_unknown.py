"""Writes whose commit's outcome was lost (the connection dropped during COMMIT):
neither a task failure nor a lost or doubled effect. A delegation is looked up by its
key and made again only if it is not there; a step makes its task resume from what
the store holds. The store is wrapped to lose the outcome of one real write, after it
committed or before; both backends raise ``OutcomeUnknownError`` in that case."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from test_mailbox_tools import call, done, make_runtime, rows, step, tool_results
from wakeful.core.states import TaskState
from wakeful.errors import OutcomeUnknownError

LOST = "the connection was lost while committing; the write may or may not have been stored"


def lose_once(method: Callable[..., Any], *, committed: bool, when: Callable[..., bool]
              ) -> tuple[Callable[..., Any], list[int]]:
    """``method`` (an async store write) whose first call that ``when`` picks raises
    OutcomeUnknownError, having written (``committed``) or not."""
    lost: list[int] = []

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not lost and when(*args, **kwargs):
            lost.append(1)
            if committed:
                await method(*args, **kwargs)
            raise OutcomeUnknownError(LOST)
        return await method(*args, **kwargs)

    return wrapped, lost


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not-committed"])
async def test_a_delegation_whose_commit_was_lost_makes_one_task(tmp_path: Path,
                                                                committed: bool) -> None:
    runtime = make_runtime(tmp_path, {
        "boss": [step(call("delegate_task", agent="worker", instruction="compute")), done()],
        "worker": [done("42")],
    })
    store = runtime.store
    store.create_task, lost = lose_once(  # type: ignore[method-assign]
        store.create_task, committed=committed,
        when=lambda record, mail=(): record.agent == "worker")
    mail_store = runtime.mailbox.store
    load = mail_store.load_delegations
    reads_failed: list[int] = []

    async def failing_right_after(**kwargs: Any) -> Any:
        if lost and not reads_failed:  # the first look after the loss fails too
            reads_failed.append(1)
            raise ConnectionError("connection lost")
        return await load(**kwargs)

    mail_store.load_delegations = failing_right_after  # type: ignore[method-assign]
    await runtime.start()
    try:
        boss = await runtime.create_task("boss", "delegate it")
        finished = await runtime.wait_task(boss.id, 60)
    finally:
        await runtime.stop()
    assert lost == [1] and reads_failed == [1]
    assert finished.state is TaskState.DONE
    db = tmp_path / "wakeful.db"
    assert rows(db, "SELECT COUNT(*) FROM tasks WHERE agent = 'worker'") == [(1,)]
    [result] = tool_results(db, boss.id)
    answer = json.loads(result["content"])
    assert answer["state"] == "done" and answer["result"] == "42"


async def test_a_step_whose_commit_was_lost_is_resumed_not_failed(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, {
        "boss": [step(call("send_mail", to="worker", subject="s1", body="one")),
                 step(call("send_mail", to="worker", subject="s2", body="two")),
                 done("finished")],
        "worker": [done()],
    })
    store = runtime.store
    queue = store.queue_step
    steps: list[int] = []
    lost: list[int] = []

    async def outcome_lost(write: asyncio.Future[None]) -> None:
        await write  # committed; then the connection is gone before the answer
        raise OutcomeUnknownError(LOST)

    def queued(task_id: str, first_seq: int, *args: Any, **kwargs: Any
               ) -> asyncio.Future[None]:
        write = queue(task_id, first_seq, *args, **kwargs)
        steps.append(first_seq)
        if len(steps) == 3 and not lost:  # the second reply (after a reply and a result)
            lost.append(1)
            return asyncio.ensure_future(outcome_lost(write))
        return write

    update = store.update_task
    put_back_lost: list[int] = []

    async def first_put_back_lost(task_id: str, *args: Any, **kwargs: Any) -> Any:
        if lost and not put_back_lost and kwargs.get("state") == TaskState.QUEUED.value:
            put_back_lost.append(1)  # putting it back loses its answer too, uncommitted
            raise OutcomeUnknownError(LOST)
        return await update(task_id, *args, **kwargs)

    store.queue_step = queued  # type: ignore[method-assign]
    store.update_task = first_put_back_lost  # type: ignore[method-assign]
    await runtime.start()
    try:
        boss = await runtime.create_task("boss", "send two")
        finished = await runtime.wait_task(boss.id, 60)
        events = await store.query_events(types=["task.write_unknown"], task_id=boss.id)
    finally:
        await runtime.stop()
    assert lost == [1] and put_back_lost == [1] and len(events) == 1
    assert finished.state is TaskState.DONE and finished.result == "finished"
    db = tmp_path / "wakeful.db"
    said = [r[0] for r in rows(db, "SELECT json_extract(data, '$.content') FROM "
                               "task_messages WHERE task_id = ? AND json_extract(data, "
                               "'$.role') = 'assistant' ORDER BY seq", boss.id)]
    assert said == ["working", "working", "finished"]  # each step once
    subjects = [r[0] for r in rows(db, "SELECT subject FROM mail WHERE sender LIKE 'boss%' "
                                   "ORDER BY created_at")]
    assert subjects == ["s1", "s2"]  # each mail once
