"""Asking a person: the ``ask_person`` tool, and the open questions a person sees.

A question is mail from the asking task (``writer/t_123``) to the person, with payload
``{"question": true, ...}``: it shows in that person's 1-1 chat with the agent and in
the web UI's inbox. The person's answer is a reply to that mail (web UI, ``wakeful
answer``, the API), which the mailbox delivers to the task's own mailbox; the task
waits for it as a stored wait (see :mod:`wakeful.schedule.waits`), holding no model
session, and a timeout ends the wait with a clear result. Everything is keyed by the
task, its step and the call, so a task resumed after a restart neither asks twice nor
waits longer than it was told to; the answer is acknowledged in the same transaction
as the tool's result, so it is never lost between the two.

A question is *open* while its task has not ended and nothing has been said in its
thread since: the answer, or the note the task sends when it stops waiting.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from wakeful.core.conditions import MailArrives, Who
from wakeful.core.mail import MailFilter
from wakeful.core.timespecs import parse_seconds
from wakeful.errors import WakefulError
from wakeful.ids import new_id
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import tool

if TYPE_CHECKING:
    from wakeful.core.mail import Mail
    from wakeful.mailbox.service import Mailbox
    from wakeful.store.base import Store

MAX_QUESTION_CHARS = 4000
MAX_ASK_S = 30 * 86400.0


def _person(value: str) -> str:
    who = value if value.startswith("person:") else f"person:{value}"
    name = who.removeprefix("person:")
    if not name or any(c.isspace() for c in name):
        raise WakefulError(f"{value!r} is not a person; write 'person:NAME'")
    return who


def _key(ctx: ToolContext, *parts: Any) -> str:
    step = ctx.loop.record.step if ctx.loop is not None else 0
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
    return f"ask_person:{ctx.task_id}:{step}:{ctx.call_index}:{digest}"


@tool
async def ask_person(
    ctx: ToolContext,
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS,
                                   description="what you want to know")],
    person: Annotated[str | None, Field(description="who to ask ('person:ada'); default: "
                                        "the person who started this task")] = None,
    timeout: Annotated[str | float | None, Field(
        description="stop waiting after this long ('30m', '2h', or seconds); default: "
        "wait as long as it takes")] = None,
) -> dict[str, Any]:
    """Ask a person a question and wait for their answer, which is returned.

    The question appears in the person's chat with you; no model call is made while you
    wait. With a timeout, the result says when nobody answered in time.
    """
    who = _person(person) if person else await ctx.team.person_of(ctx.task_id)
    if who is None:
        raise WakefulError("no person started this task; name the person to ask in "
                           "'person' (e.g. 'person:ada')")
    seconds = None if timeout is None else parse_seconds(timeout)
    if seconds is not None and not 0 < seconds <= MAX_ASK_S:
        raise WakefulError(f"timeout {timeout!r}: give more than 0 and at most 30 days")
    key = _key(ctx, question, who, timeout)
    me = f"{ctx.agent}/{ctx.task_id}"
    mailbox = ctx.mail
    until = None if seconds is None else ctx.clock.now() + seconds
    sent = await mailbox.send(me, who, f"Question from {ctx.agent}", question,
                              payload={"question": True, "task_id": ctx.task_id,
                                       "agent": ctx.agent, "due_at": until},
                              correlation_id=new_id("c"), reply_to=me,
                              idempotency_key=key, priority="high")
    asked = sent.mail
    if not sent.duplicate:
        ctx.emit("question.asked", mail_id=asked.id, person=who, question=question[:500])
    wanted = MailFilter(correlation_id=asked.correlation_id)
    taken = mailbox.claim(me, wanted, 1)
    if not taken:
        pending = await ctx.waits.prepare(
            Who(ctx.agent, ctx.task_id), [MailArrives(wanted)], until=until, key=key)
        if pending.ended is not None:
            wake = await pending.wait()  # at once, recording the wake-up
        else:
            short = question if len(question) <= 60 else question[:59] + "…"
            async with ctx.waiting(f"answer from {who} to {short!r}"):
                wake = await pending.wait()
        if wake.reason != "event":
            await mailbox.reply(me, asked, "(I stopped waiting for an answer to this "
                                "question.)", to=who, payload={"question_closed": asked.id},
                                idempotency_key=f"{key}:closed")
            ctx.emit("question.timed_out", mail_id=asked.id, person=who)
            return {"answer": None, "timed_out": True,
                    "note": f"{who} did not answer within {timeout}; go on without the "
                            "answer, or ask again"}
        taken = mailbox.claim(me, wanted, 1)
        if not taken:
            raise WakefulError(f"the answer to question {asked.id} arrived but could not "
                               "be taken (another run of this task holds it)")
    reply = taken[0]
    change = mailbox.ack_with_step(reply)
    if change is not None:
        ctx.commit_with_result(change)  # acknowledged with this call's result
    ctx.emit("question.answered", mail_id=asked.id, person=reply.mail.sender,
             answer_id=reply.mail.id)
    return {"answer": reply.mail.body, "from": reply.mail.sender}


QUESTION_TOOLS = (ask_person,)


async def open_questions(mailbox: Mailbox, store: Store, person: str, limit: int = 200
                         ) -> list[Mail]:
    """Questions asked of ``person`` that still wait for an answer, oldest first: read
    from the store's unanswered questions (however much other mail the person has),
    leaving out those whose asking task has ended."""
    await mailbox.flush()  # read this process's own writes
    found: list[Mail] = []
    after = 0
    while len(found) < limit:
        page = await mailbox.store.unanswered_questions(person, after_seq=after, limit=100)
        for envelope in page:
            payload = envelope.payload or {}
            task_id = str(payload.get("task_id") or "")
            if payload.get("question") is not True or envelope.correlation_id is None:
                continue
            record = await store.get_task(task_id) if task_id else None
            if record is not None and not record.state.ended:
                found.append(envelope.view())
        if len(page) < 100:
            break
        after = page[-1].seq or after
    return found[:limit]


async def answer_question(mailbox: Mailbox, person: str, question_id: str, answer: str
                          ) -> Any:
    """Send ``person``'s answer to a question (a reply the asking task is waiting for)."""
    original = await mailbox.store.get_mail(question_id)
    if original is None or not (original.payload or {}).get("question"):
        raise WakefulError(f"no question with id {question_id!r}")
    if original.recipient != person:
        raise WakefulError(f"question {question_id} was asked of {original.recipient}, "
                           f"not {person}")
    if not answer.strip():
        raise WakefulError("the answer is empty")
    sent = await mailbox.reply(person, original, answer,
                               idempotency_key=f"answer:{question_id}")
    await mailbox.ack_id(person, question_id)
    return sent
