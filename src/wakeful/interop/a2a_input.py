"""A remote A2A task's ``input-required``, asked of whoever started the forwarding task.

The task that forwards work to a remote agent (see :mod:`.a2a_remote`) calls the
``remote_input`` tool when the remote task stops for input. The question goes, as a
mail, to where that task's outcome will go, so that the asker sees it while it waits:

* a delegated task: to the delegation's reply-to address, with the delegation's
  correlation id. A delegator blocked in ``delegate_task`` wakes with the question
  (state ``input-required``) instead of waiting out its timeout;
* a task started by a mail (``request`` / ``send_mail`` to ``a2a:NAME``): as a reply
  to that mail, so a ``request`` returns it as its reply;
* a task started over Wakeful's own A2A server: to that A2A caller (the A2A task
  becomes ``input-required`` in turn); a person: to the person.

The question's reply-to is the forwarding task itself, so the asker answers with the
ordinary ``reply`` tool (a person: a reply in the web UI); that reply is the tool's result,
and the forwarding model sends it as the next message on the same remote task. The
remote task id travels in the tool call's arguments, so that a forwarding task resumed
after a restart still continues the right remote task.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from wakeful.core.mail import MailFilter
from wakeful.interop.caller import caller_address
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import tool

if TYPE_CHECKING:
    from wakeful.core.records import TaskRecord
    from wakeful.toolkit.capabilities import MailCapability

TOOL_NAME = "remote_input"
QUESTION_FLAG = "input_required"  # payload key that marks a remote agent's question


@dataclass(frozen=True, slots=True)
class Asker:
    """Where a forwarding task's question goes and what threads it to the asker."""

    to: str
    correlation_id: str | None = None
    in_reply_to: str | None = None
    thread_id: str | None = None


async def find_asker(mailbox: MailCapability, get_task: Callable[[str], Awaitable[TaskRecord]],
                     task_id: str) -> Asker | None:
    """Who waits for ``task_id``'s outcome (see the module docstring); None: nobody."""
    await mailbox.flush()
    delegation = await mailbox.store.get_delegation(task_id)
    if delegation is not None:
        return Asker(delegation.reply_to, delegation.correlation_id)
    record = await get_task(task_id)
    if record.cause_id:
        cause = await mailbox.store.get_mail(record.cause_id)
        if cause is not None:
            return Asker(cause.reply_to, cause.correlation_id, cause.id, cause.thread_id)
    creator = record.created_by
    if creator.startswith("a2a:"):  # started over Wakeful's A2A server
        return Asker(caller_address(task_id))
    if creator.startswith("person:") or "/" in creator:
        return Asker(creator)
    return None


@tool(name=TOOL_NAME)
async def remote_input(
    ctx: ToolContext,
    question: Annotated[str, Field(min_length=1, max_length=20_000)],
    remote_task: Annotated[str, Field(min_length=1, max_length=256,
                                      description="the remote A2A task that waits")],
    timeout_s: Annotated[float | None, Field(default=None, gt=0, le=7 * 86_400)] = None,
) -> dict[str, Any]:
    """Ask whoever started this task the remote agent's question; wait for the answer.

    Used by remote-agent tasks (their model calls it by itself).
    """
    mailbox = ctx.mail
    me = f"{ctx.agent}/{ctx.task_id}"
    asker = await find_asker(mailbox, ctx.team.get_task, ctx.task_id)
    if asker is None:
        return {"answer": None, "note": "nobody to ask: this task has no delegator, "
                                        "sender or caller"}
    step = ctx.loop.record.step if ctx.loop is not None else 0
    digest = hashlib.sha256(f"{remote_task}\n{question}".encode()).hexdigest()[:20]
    sent = await mailbox.send(
        me, asker.to, "input required", question, reply_to=me,
        correlation_id=asker.correlation_id, in_reply_to=asker.in_reply_to,
        thread_id=asker.thread_id, causation_id=ctx.task_id,
        payload={QUESTION_FLAG: True, "task_id": ctx.task_id, "agent": ctx.agent,
                 "remote_task": remote_task,
                 "note": "answer with reply (to this mail); the final result comes "
                         "later as mail, as the first answer would have"},
        idempotency_key=f"{ctx.task_id}:{step}:{TOOL_NAME}:{digest}")
    ctx.emit("a2a.remote.input_required", remote_task=remote_task, asked=asker.to,
             mail_id=sent.mail.id)
    timeout = timeout_s if timeout_s is not None else mailbox.config.request_timeout_s
    async with ctx.waiting(f"an answer from {asker.to} for remote task {remote_task}"):
        # Only a reply to the question: mail to the agent itself (shared by its
        # tasks) is forwarded as tasks of its own (see .a2a_mail).
        answer = await mailbox.receive(me, MailFilter(in_reply_to=sent.mail.id), timeout)
    # Acknowledged with this call's result: a task resumed before that commit takes
    # the same answer again.
    change = mailbox.ack_with_step(answer)
    if change is not None:
        ctx.commit_with_result(change)
    if ctx.loop is None:
        await mailbox.commit_changes(ctx.take_changes())
    return {"answer": answer.mail.body, "from": answer.mail.sender,
            "remote_task": remote_task}
