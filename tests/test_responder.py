"""The responder: people's mail and channel posts are answered by agents' own tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from wakeful.cli import app
from wakeful.core.states import TaskState
from wakeful.models.base import Message, ModelResponse, StreamEvent, ToolSpec
from wakeful.models.scripted import ScriptedModel
from wakeful.project.loader import load_project
from wakeful.runtime.runtime import Runtime

if TYPE_CHECKING:
    from conftest import AgentFactory, RuntimeFactory, ScriptFactory, WaitUntil


async def test_a_person_mails_an_agent_and_gets_its_streamed_answer(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil,
) -> None:
    model = script([{"say": "Hello Alice, here is my answer"}], latency_ms=50)
    model.script = model.script.model_copy(update={"token_delay_ms": 5})
    rt = await make_runtime([agent_def("writer")], {"m": model})
    with rt.events.subscribe(lambda e: e.type in ("mail.answering", "model.token")) as feed:
        sent = await rt.mailbox.send("person:alice", "writer", "Question", "What do you do?")

        async def answered() -> bool:
            mails = await rt.mailbox.conversation("person:alice", "writer")
            return any(m.sender == "writer" for m in mails)

        await wait_until(answered, what="the answer mail")
        seen = []
        while (event := feed.get_nowait()) is not None:
            seen.append(event)
    [answering] = [e for e in seen if e.type == "mail.answering"]
    task_id = answering.data["task_id"]
    assert answering.data == {"mail_id": sent.id, "task_id": task_id, "agent": "writer",
                              "person": "person:alice"}
    tokens = [e for e in seen if e.type == "model.token"]
    assert {e.task_id for e in tokens} == {task_id}
    assert sum(e.data["count"] for e in tokens) == 6  # coalesced at the source, none lost
    assert "".join(e.data["text"] for e in tokens) == "Hello Alice, here is my answer"

    task = await rt.get_task(task_id)
    assert task.created_by == "person:alice" and task.cause_id == sent.id
    assert "What do you do?" in task.instruction
    conversation = await rt.mailbox.conversation("person:alice", "writer")
    answer = next(m for m in conversation if m.sender == "writer")
    assert answer.body == "Hello Alice, here is my answer"
    assert answer.recipient == "person:alice" and answer.in_reply_to == sent.id
    assert answer.thread_id == sent.mail.thread_id
    assert answer.payload == {"task_id": task_id, "in_reply_to": sent.id}


async def test_agents_in_a_channel_answer_a_post_concurrently(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil,
) -> None:
    # Each model call waits until all three agents are inside one at once: the answers
    # arrive only if the agents answer concurrently (no wall-clock bound needed).
    together = asyncio.Barrier(3)

    class Together(ScriptedModel):
        async def complete(self, messages: list[Message], tools: list[ToolSpec]
                           ) -> ModelResponse:
            await together.wait()
            return await super().complete(messages, tools)

        async def stream(self, messages: list[Message], tools: list[ToolSpec]
                         ) -> AsyncIterator[StreamEvent]:
            await together.wait()
            async for event in super().stream(messages, tools):
                yield event

    models = {name: Together(script([{"say": f"{name} says hi"}]).script, name=name)
              for name in ("a", "b", "c")}
    rt = await make_runtime([agent_def(n, model=n) for n in ("a", "b", "c")], models)
    await rt.mailbox.create_channel("general", ["a", "b", "c", "person:alice"])
    post = await rt.mailbox.post("person:alice", "general", "Hello team")

    async def three_answers() -> bool:
        history = await rt.mailbox.history(None, "general")
        return sum(m.sender in ("a", "b", "c") for m in history) == 3

    await wait_until(three_answers, within=60, what="three answers, given concurrently")
    history = await rt.mailbox.history(None, "general")
    answers = {m.sender: m for m in history if m.sender != "person:alice"}
    assert {s: m.body for s, m in answers.items()} == {
        "a": "a says hi", "b": "b says hi", "c": "c says hi"}
    assert all(m.in_reply_to == post.id and m.recipient == "#general"
               for m in answers.values())
    # The agents' answers in the channel do not set the other agents off again.
    await asyncio.sleep(0.3)
    assert len(await rt.store.list_tasks()) == 3


async def test_mail_between_agents_and_opted_out_agents_are_not_answered(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
) -> None:
    rt = await make_runtime([agent_def("a"), agent_def("quiet", answer_mail=False)],
                            {"m": script([{"say": "ok"}])})
    await rt.mailbox.send("a", "quiet", "from an agent", "hi")
    await rt.mailbox.send("person:alice", "quiet", "from a person", "hi")
    await rt.mailbox.send("quiet", "a", "agent to agent", "hi")
    await asyncio.sleep(0.3)
    assert await rt.store.list_tasks() == []
    assert rt.mailbox.pending("quiet") == 2  # left for its tasks to read


async def test_a_failed_answer_is_reported_to_the_person(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil,
) -> None:
    rt = await make_runtime([agent_def("w", policy="never")],
                            {"m": script([{"error": "provider is down"}])})
    await rt.mailbox.send("person:bob", "w", "", "help?")

    async def answered() -> bool:
        return any(m.sender == "w" for m in await rt.mailbox.conversation("person:bob", "w"))

    await wait_until(answered, what="the failure notice")
    [notice] = [m for m in await rt.mailbox.conversation("person:bob", "w") if m.sender == "w"]
    assert notice.body.startswith("I could not answer:") and "provider is down" in notice.body
    [task] = await rt.store.list_tasks()
    assert task.state is TaskState.FAILED


async def test_mail_that_waited_while_nothing_ran_is_answered_at_start(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "team"
    # The CLI runs its own event loop: call it from a thread, as another process would.
    made = await asyncio.to_thread(runner.invoke, app, ["init", str(folder)])
    assert made.exit_code == 0
    (folder / "wakeful.yaml").write_text("name: quiet-team\n")  # no startup tasks
    sent = await asyncio.to_thread(runner.invoke, app, [
        "mail", "send", "writer", "Could you draft a tagline?", "--from", "person:carol",
        "-p", str(folder)])
    assert sent.exit_code == 0, sent.stderr
    runtime = Runtime.from_project(load_project(folder))
    async with runtime:
        await runtime.wait_idle(20)
        conversation = await runtime.mailbox.conversation("person:carol", "writer")
    answer = [m for m in conversation if m.sender == "writer"]
    # The writer answers in its own words; it never echoes the responder's instruction.
    assert len(answer) == 1 and answer[0].body.startswith("Hi! I write the team's copy")
    assert "Answer them" not in answer[0].body and "carol" not in answer[0].body
    # A second start finds nothing left to answer.
    async with Runtime.from_project(load_project(folder)) as again:
        await again.wait_idle(20)
        # (The example monitor's schedule starts tasks of its own: count the writer's.)
        assert len(await again.store.list_tasks(agent="writer")) == 1


@pytest.mark.sqlite_only
async def test_an_answer_owed_by_a_worker_that_stopped_is_sent_by_the_next(
    make_runtime: RuntimeFactory, agent_def: AgentFactory, script: ScriptFactory,
    wait_until: WaitUntil, db_path: Path,
) -> None:
    import sqlite3

    rt = await make_runtime([agent_def("writer")], {"m": script([{"say": "On it."}])})
    sent = await rt.mailbox.send("person:ann", "writer", "", "Are you there?")

    async def answers() -> list[str]:
        return [m.id for m in await rt.mailbox.conversation("person:ann", "writer")
                if m.sender == "writer"]

    await wait_until(answers, what="the answer")
    await rt.stop()
    # As if the worker had been killed after the answering task ended and before its
    # answer was stored: the task is done, the person's mail handled, no answer.
    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM mail_deliveries WHERE mail_id IN (SELECT id FROM mail "
                     "WHERE sender = 'writer')")
        conn.execute("DELETE FROM mail WHERE sender = 'writer'")
    again = await make_runtime([agent_def("writer")], {"m": script([{"say": "On it."}])})

    async def answered() -> list[str]:
        return [m.body for m in await again.mailbox.conversation("person:ann", "writer")
                if m.sender == "writer" and m.in_reply_to == sent.id]

    await wait_until(answered, what="the owed answer")
    assert await answered() == ["On it."]
    tasks = await again.store.list_tasks(agent="writer")
    assert len(tasks) == 1  # answered from the task that ran, not a new one


async def test_a_channel_rule_names_who_answers_a_post_that_mentions_nobody(
        tmp_path: Path, wait_until: WaitUntil) -> None:
    runner = CliRunner()
    folder = tmp_path / "team"
    made = await asyncio.to_thread(runner.invoke, app, ["init", str(folder)])
    assert made.exit_code == 0
    (folder / "wakeful.yaml").write_text(
        "name: hosted\nmailbox:\n  channels:\n    - name: room\n      members: [writer, "
        "researcher, critic, 'person:ada']\n      answer: researcher\n")
    async with Runtime.from_project(load_project(folder)) as runtime:

        async def answers() -> list[str]:
            posts = await runtime.mailbox.history(None, "room")
            return [p.sender for p in posts if not p.sender.startswith("person:")]

        await runtime.mailbox.post("person:ada", "room", "What is our plan?")
        await wait_until(answers, what="the host's answer")
        await runtime.wait_idle(20)
        assert await answers() == ["researcher"]  # the rule: the host alone
        await runtime.mailbox.post("person:ada", "room", "@writer a tagline please")
        await wait_until(lambda: _more(answers, 2), what="the writer's answer")
        await runtime.wait_idle(20)
        assert await answers() == ["researcher", "writer"]  # a mention beats the rule


async def _more(answers: Callable[[], Awaitable[list[str]]], n: int) -> bool:
    return len(await answers()) >= n


def test_a_channel_rule_naming_no_agent_is_a_clear_error(tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "team"
    assert runner.invoke(app, ["init", str(folder)]).exit_code == 0
    (folder / "wakeful.yaml").write_text(
        "name: hosted\nmailbox:\n  channels:\n    - name: room\n      answer: nobody\n")
    errors = [str(e) for e in load_project(folder).errors]
    assert any("mailbox.channels.0.answer" in e and "nobody" in e for e in errors), errors
