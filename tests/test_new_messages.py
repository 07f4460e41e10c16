"""on_new_message: a person's new message while a task of the agent still answers them
is merged into that task at its next step boundary, queued after it, interrupts it, or
is refused; each outcome is an event and a note in the conversation. The running task
is held at a known point by an approval, so nothing here depends on timing."""

from __future__ import annotations

from typing import Any

import pytest

from approval_support import Make, call, pending_approval, people_runtime
from polling import until
from wakeful.core.states import TaskState
from wakeful.runtime.runtime import Runtime

__all__ = ["people_runtime"]

ADA = "person:ada"


def agent(policy: str) -> dict[str, Any]:
    return {"name": "writer", "model": "scripted:writer", "tools": ["note"],
            "on_new_message": policy,
            "approval": [{"tools": ["note"], "when": {"text": "hold"}}]}


def model() -> Any:
    # The first message's task notes "hold" (which waits for an approval), then answers;
    # any other task answers at once.
    from wakeful.models.scripted import ScriptedModel, ScriptFile

    return ScriptedModel(ScriptFile.model_validate({"scripts": [
        {"match": "^first", "steps": [call("note", text="hold"),
                                      {"say": "answer to the first"}]},
        {"steps": [{"say": "answer to: {instruction}"}]}]}))


async def started(rt: Runtime) -> tuple[str, str]:
    """The first message's task, held at its approval, and that approval's id."""
    await rt.mailbox.send(ADA, "writer", "", "first message")
    found: list[str] = []

    async def one() -> bool:
        found[:] = [t.id for t in await rt.store.list_tasks(agent="writer")]
        return len(found) == 1

    await until(one, 10, "the first task")
    approval = await pending_approval(rt, found[0])
    return found[0], approval.id


async def events_of(rt: Runtime, kind: str) -> list[dict[str, Any]]:
    await rt.store.flush()
    return [e.data for e in await rt.store.query_events(types=[f"message.{kind}"])]


async def chat(rt: Runtime) -> list[tuple[str, str, str | None]]:
    mails = await rt.mailbox.conversation(ADA, "writer")
    return [(m.sender.split("/")[0], m.body, (m.payload or {}).get("note")) for m in mails]


async def test_merge_joins_the_running_task_at_its_next_step(people_runtime: Make) -> None:
    rt = await people_runtime([agent("merge")], {"scripted:writer": model()})
    first, approval = await started(rt)
    sent = await rt.mailbox.send(ADA, "writer", "", "also mention the budget")
    await until(lambda: rt.responder.new_messages.merging(sent.mail.id), 10,
                "the mail held for the merge")
    # told only once it is merged (at the task's next step), not while it waits
    assert await events_of(rt, "merged") == []
    await rt.approvals.decide(approval, approve=True, by=ADA)
    await until(lambda: events_of(rt, "merged"), 10, "the merge")
    assert (await rt.wait_task(first, 10)).state is TaskState.DONE
    assert len(await rt.store.list_tasks(agent="writer")) == 1  # no second task
    conversation = await rt.store.load_messages(first)
    assert conversation[-2] == {**conversation[-2], "role": "user",
                                "content": "also mention the budget"}
    await until(lambda: len(rt.mailbox.held("writer")) == 0, 10, "the mail acked")
    [event] = await events_of(rt, "merged")
    assert event["task_id"] == first and event["person"] == ADA

    async def shown() -> bool:
        notes = [n for _, _, n in await chat(rt)]
        return "merged" in notes and any(b == "answer to the first" for _, b, _ in
                                         await chat(rt))

    await until(shown, 10, "the note and the answer in the chat")


async def test_queue_starts_a_task_after_the_running_one(people_runtime: Make) -> None:
    rt = await people_runtime([agent("queue")], {"scripted:writer": model()})
    first, approval = await started(rt)
    await rt.mailbox.send(ADA, "writer", "", "second message")
    await until(lambda: events_of(rt, "queued"), 10, "the queueing")
    [event] = await events_of(rt, "queued")
    second = event["new_task_id"]
    assert (await rt.get_task(second)).state is TaskState.QUEUED
    await rt.approvals.decide(approval, approve=True, by=ADA)
    one, two = await rt.wait_task(first, 10), await rt.wait_task(second, 10)
    assert one.state is two.state is TaskState.DONE
    assert two.result == "answer to: second message"
    assert two.started_at is not None and one.finished_at is not None
    assert two.started_at >= one.finished_at


async def test_interrupt_cancels_and_answers_the_new_message(people_runtime: Make) -> None:
    rt = await people_runtime([agent("interrupt")], {"scripted:writer": model()})
    first, _ = await started(rt)
    await rt.mailbox.send(ADA, "writer", "", "forget that, do this")
    await until(lambda: events_of(rt, "interrupted"), 10, "the interruption")
    assert (await rt.wait_task(first, 10)).state is TaskState.CANCELLED
    tasks = await rt.store.list_tasks(agent="writer")
    [second] = [t for t in tasks if t.id != first]
    assert (await rt.wait_task(second.id, 10)).result == "answer to: forget that, do this"

    async def answered() -> bool:
        bodies = [b for _, b, _ in await chat(rt)]
        return ("I stopped this answer to answer your newer message." in bodies
                and "answer to: forget that, do this" in bodies)

    await until(answered, 10, "both answers in the chat")


async def test_reject_refuses_and_starts_nothing(people_runtime: Make) -> None:
    rt = await people_runtime([agent("reject")], {"scripted:writer": model()})
    first, approval = await started(rt)
    await rt.mailbox.send(ADA, "writer", "", "one more thing")
    await until(lambda: events_of(rt, "rejected"), 10, "the refusal")
    refusal = [(b, n) for _, b, n in await chat(rt) if n == "rejected"]
    assert len(refusal) == 1 and "still answering your previous message" in refusal[0][0]
    assert len(await rt.store.list_tasks(agent="writer")) == 1
    await rt.approvals.decide(approval, approve=True, by=ADA)
    assert (await rt.wait_task(first, 10)).state is TaskState.DONE


@pytest.mark.parametrize("policy", ["merge", "queue", "interrupt", "reject"])
async def test_other_people_and_idle_agents_are_not_affected(people_runtime: Make,
                                                             policy: str) -> None:
    rt = await people_runtime([agent(policy)], {"scripted:writer": model()})
    first, _ = await started(rt)
    await rt.mailbox.send("person:bob", "writer", "", "hello from bob")

    async def answered() -> bool:
        mails = await rt.mailbox.conversation("person:bob", "writer")
        return any(m.body == "answer to: hello from bob" for m in mails)

    await until(answered, 10, "bob's own answer")
    assert (await rt.get_task(first)).state is TaskState.WAITING



async def _move(writer_from: Runtime, writer_to: Runtime) -> None:
    """Hand the agent ``writer`` from one worker to the other (as rebalancing does)."""
    epoch = writer_from.ownership.held.pop("writer")
    await writer_from._hand_over("writer")
    await writer_from.ownership.release({"writer": epoch})
    await writer_to.ownership.round()
    assert writer_to.ownership.owns("writer")


async def test_a_message_held_for_a_merge_is_answered_once_after_the_agent_moves_and_back(
        people_runtime: Make) -> None:
    # Found by the PostgreSQL chaos test: a worker that lost an agent kept the mail it
    # held for a merge; when it took the agent back, it merged that mail into the task,
    # although the other worker had meanwhile answered it on its own (two answers).
    one = await people_runtime([agent("merge")], {"scripted:writer": model()})
    first, approval = await started(one)
    sent = await one.mailbox.send(ADA, "writer", "", "also mention the budget")
    await until(lambda: one.responder.new_messages.merging(sent.mail.id), 10,
                "the mail held for the merge")
    other = await people_runtime([agent("merge")], {"scripted:writer": model()})
    await _move(one, other)
    assert not one.responder.new_messages.merging(sent.mail.id)

    async def replies_to_second() -> list[str]:
        mails = await one.mailbox.conversation(ADA, "writer")
        return [m.body for m in mails if m.in_reply_to == sent.mail.id]

    # The other worker does not know the first task answers the same person: it
    # answers the held mail (never acknowledged) in a task of its own.
    await until(replies_to_second, 60, "the held mail answered by the other worker")
    await _move(other, one)  # and the agent comes back, its first task still waiting
    await pending_approval(one, first)
    await one.approvals.decide(approval, approve=True, by=ADA)
    assert (await one.wait_task(first, 20)).state is TaskState.DONE
    await one.wait_idle(20)
    assert await replies_to_second() == ["answer to: also mention the budget"]
    conversation = await one.store.load_messages(first)
    assert "also mention the budget" not in [m.get("content") for m in conversation]
