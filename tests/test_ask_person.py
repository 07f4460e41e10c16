"""ask_person: the question reaches the person (their 1-1 chat, their open questions),
the task waits holding no model session, the answer is the tool's result; a timeout
ends the wait with a clear result (fake clock); the question is asked once across a
restart of the runtime."""

from __future__ import annotations

import json

from approval_support import Make, call, people_runtime, steps
from polling import until
from wakeful.approvals.questions import answer_question, open_questions
from wakeful.core.states import TaskState
from wakeful.runtime.runtime import Runtime
from wakeful.schedule.clock import FakeClock

__all__ = ["people_runtime"]


def asker(**fields: object) -> dict[str, object]:
    return {"name": "writer", "model": "scripted:writer", "tools": ["ask_person"],
            "answer_mail": False, **fields}


def asks(**args: object) -> object:
    return steps(call("ask_person", question="Which title do you prefer?", **args),
                 {"say": "{last_tool_result}"})


async def question_for(rt: Runtime, person: str) -> str:
    found: list[str] = []

    async def asked() -> bool:
        found[:] = [m.id for m in await open_questions(rt.mailbox, rt.store, person)]
        return bool(found)

    await until(asked, 10, f"a question for {person}")
    return found[0]


async def test_the_person_who_started_the_task_answers(people_runtime: Make) -> None:
    rt = await people_runtime([asker()], {"scripted:writer": asks()})
    task = await rt.create_task("writer", "title it", created_by="person:ada")
    question = await question_for(rt, "person:ada")
    # The question is mailed before the task's wait is stored: wait for it.

    async def waiting() -> bool:
        return (await rt.get_task(task.id)).state is TaskState.WAITING

    await until(waiting, 10, "the task to wait for the answer")
    chat = await rt.mailbox.conversation("person:ada", "writer")
    assert [m.body for m in chat] == ["Which title do you prefer?"]
    await answer_question(rt.mailbox, "person:ada", question, "The second one")
    done = await rt.wait_task(task.id, 10)
    assert json.loads(done.result or "{}") == {"answer": "The second one",
                                               "from": "person:ada"}
    assert await open_questions(rt.mailbox, rt.store, "person:ada") == []


async def test_a_question_stays_open_under_newer_mail_the_person_read(
        people_runtime: Make) -> None:
    # The inbox used to look at the person's newest 200 mails only.
    rt = await people_runtime([asker()], {"scripted:writer": asks()})
    task = await rt.create_task("writer", "title it", created_by="person:ada")
    question = await question_for(rt, "person:ada")
    for i in range(260):
        await rt.mailbox.send("person:bob", "person:ada", f"note {i}", "fyi")
    inbox = await rt.mailbox.list_mail(owner="person:ada", limit=300)
    assert len(inbox) == 261
    for mail in inbox:  # the question too: reading it (which acks it) does not answer it
        await rt.mailbox.read("person:ada", mail.id)
    assert [m.id for m in await open_questions(rt.mailbox, rt.store, "person:ada")] == [
        question]
    await answer_question(rt.mailbox, "person:ada", question, "The first")
    assert (await rt.wait_task(task.id, 10)).state is TaskState.DONE
    assert await open_questions(rt.mailbox, rt.store, "person:ada") == []


async def test_a_named_person_is_asked(people_runtime: Make) -> None:
    rt = await people_runtime([asker()], {"scripted:writer": asks(person="bob")})
    task = await rt.create_task("writer", "title it")
    question = await question_for(rt, "person:bob")
    await answer_question(rt.mailbox, "person:bob", question, "none")
    assert (await rt.wait_task(task.id, 10)).state is TaskState.DONE


async def test_a_task_nobody_started_must_name_the_person(people_runtime: Make) -> None:
    rt = await people_runtime([asker()], {"scripted:writer": asks()})
    task = await rt.create_task("writer", "title it", created_by="startup")
    done = await rt.wait_task(task.id, 10)
    assert "no person started this task" in (done.result or "")


async def test_a_timeout_ends_the_wait_clearly(people_runtime: Make) -> None:
    clock = FakeClock()
    rt = await people_runtime([asker()], {"scripted:writer": asks(timeout="30m")},
                              clock=clock)
    task = await rt.create_task("writer", "title it", created_by="person:ada")
    await question_for(rt, "person:ada")
    await until(lambda: rt.waits.waiting(task.id) is not None, 10, "the wait")
    await clock.advance(1801)
    done = await rt.wait_task(task.id, 10)
    result = json.loads(done.result or "{}")
    assert result["timed_out"] is True and result["answer"] is None
    assert "person:ada did not answer within 30m" in result["note"]
    assert await open_questions(rt.mailbox, rt.store, "person:ada") == []
    chat = await rt.mailbox.conversation("person:ada", "writer")
    assert "stopped waiting" in chat[-1].body


async def test_a_restart_asks_once_and_the_answer_still_arrives(people_runtime: Make
                                                                ) -> None:
    first = await people_runtime([asker()], {"scripted:writer": asks()})
    task = await first.create_task("writer", "title it", created_by="person:ada")
    await question_for(first, "person:ada")
    await first.stop()
    second = await people_runtime([asker()], {"scripted:writer": asks()})
    await until(lambda: second.waits.waiting(task.id) is not None, 10, "the resumed wait")
    [question] = [m.id for m in await open_questions(second.mailbox, second.store,
                                                      "person:ada")]
    chat = await second.mailbox.conversation("person:ada", "writer")
    assert len(chat) == 1  # asked once
    await answer_question(second.mailbox, "person:ada", question, "yes")
    done = await second.wait_task(task.id, 10)
    assert json.loads(done.result or "{}")["answer"] == "yes"


async def test_answered_from_the_cli_in_another_process(people_runtime: Make,
                                                        tmp_path: object) -> None:
    import asyncio
    import os
    import sys
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "wakeful.yaml").write_text("name: t\n")
    (root / "agents").mkdir(exist_ok=True)
    (root / "agents" / "writer.yaml").write_text("name: writer\ntools: [ask_person]\n")
    rt = await people_runtime([asker()], {"scripted:writer": asks()})
    task = await rt.create_task("writer", "title it", created_by="person:ada")
    question = await question_for(rt, "person:ada")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wakeful", "answer", question, "From the shell", "-p",
        str(root), env=dict(os.environ), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert f"Answered question {question}" in out.decode()
    done = await rt.wait_task(task.id, 30)
    assert json.loads(done.result or "{}")["answer"] == "From the shell"
