"""The mail tools a model calls: the only way its task talks to anyone else.

A task speaks as ``agent/task_id``: that is the sender of its mail, and the mailbox of
its own that replies to its requests land in. Everything else addressed to the agent
is shared by the agent's tasks (each mail goes to one of them at a time).

Tools that send derive an idempotency key from the task, its current step and what is
sent: a task resumed after a crash replays its unfinished step, and the repeated send
is then dropped instead of mailed twice (and a repeated ``request`` or
``delegate_task`` picks up the first one's answer).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Annotated, Any

from pydantic import Field

from wakeful.core.mail import ADDRESS_HELP, REMOTE_PREFIX, Mail, MailFilter, Priority
from wakeful.core.mail_records import Delivery
from wakeful.core.records import TaskRecord
from wakeful.errors import MailError, MailTimeoutError
from wakeful.toolkit.capabilities import MailCapability
from wakeful.toolkit.context import ToolContext
from wakeful.toolkit.registry import Tool, tool

BODY_PREVIEW = 4000
_LAST = "mail:last"  # scratch: the mail this task most recently received or read

To = Annotated[str, Field(description=ADDRESS_HELP)]
Payload = Annotated[dict[str, Any] | None, Field(
    description="optional structured data (a JSON object) sent with the text")]
Timeout = Annotated[float | None, Field(
    default=None, gt=0, le=86_400, description="seconds to wait; default: the project's "
    "mailbox.request_timeout_s")]


def _mailbox(ctx: ToolContext) -> MailCapability:
    return ctx.mail


def _me(ctx: ToolContext) -> str:
    return f"{ctx.agent}/{ctx.task_id}"


def _key(ctx: ToolContext, kind: str, *parts: Any) -> str | None:
    """Same task, same step, same call -> same key (see the module docstring)."""
    if ctx.loop is None:
        return None
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    return (f"{ctx.task_id}:{ctx.loop.record.step}:{ctx.call_index}:{kind}:"
            f"{digest.hexdigest()[:20]}")


def _stamp(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def summary(mail: Mail, full: bool = False) -> dict[str, Any]:
    """A mail as a model reads it."""
    body = mail.body if full or len(mail.body) <= BODY_PREVIEW else (
        mail.body[:BODY_PREVIEW] + f"... [{len(mail.body) - BODY_PREVIEW} more characters: "
        "read_mail shows all]")
    out: dict[str, Any] = {"id": mail.id, "from": mail.sender, "to": mail.recipient,
                           "subject": mail.subject, "body": body, "sent_at": _stamp(
                               mail.created_at)}
    for name in ("payload", "thread_id", "in_reply_to", "correlation_id"):
        value = getattr(mail, name)
        if value is not None and not (name == "thread_id" and value == mail.id):
            out[name] = value
    if mail.priority != "normal":
        out["priority"] = mail.priority
    if mail.attempts > 1:
        out["delivery"] = mail.attempts
    return out


def _remember(ctx: ToolContext, mail_id: str) -> None:
    ctx.scratch[_LAST] = mail_id


@tool
async def send_mail(
    ctx: ToolContext,
    to: To,
    subject: Annotated[str, Field(description="a short subject line")] = "",
    body: Annotated[str, Field(description="the message")] = "",
    payload: Payload = None,
    priority: Priority = "normal",
    thread_id: Annotated[str | None, Field(description="continue this thread")] = None,
) -> dict[str, Any]:
    """Send mail to an agent, a task, a channel ('#name'), everyone ('*') or a person.

    Returns at once (it does not wait for an answer; use request for that). Replies come
    to your agent's mailbox; read them with check_mail.
    """
    sent = await _mailbox(ctx).send(
        _me(ctx), to, subject, body, payload=payload, priority=priority, thread_id=thread_id,
        reply_to=ctx.agent,
        idempotency_key=_key(ctx, "send", to, subject, body, payload, thread_id))
    return {"id": sent.id, "delivered_to": sent.delivered_to, "duplicate": sent.duplicate}


@tool
async def check_mail(
    ctx: ToolContext,
    sender: Annotated[str | None, Field(description="only mail from this address (an "
                                        "agent name also matches its tasks)")] = None,
    subject: Annotated[str | None, Field(description="only subjects containing this")] = None,
    thread_id: str | None = None,
    correlation_id: str | None = None,
    payload: Annotated[dict[str, Any] | None, Field(
        description="only mail whose payload has these values (keys may be dotted paths)"
    )] = None,
    limit: Annotated[int, Field(ge=1, le=50)] = 10,
    wait_s: Annotated[float, Field(ge=0, le=3600, description="if there is none yet, wait "
                                   "this many seconds for matching mail")] = 0,
    ack: Annotated[bool, Field(description="mark the mail handled as it is taken (for "
                               "mail that needs no further action)")] = False,
) -> dict[str, Any]:
    """Take your unread mail (oldest first), optionally filtered, optionally waiting.

    Each mail taken must be handled and acknowledged (ack, or reply which acknowledges),
    unless taken with ack=true; mail not acknowledged in time is delivered again.
    """
    mailbox = _mailbox(ctx)
    me = _me(ctx)
    wanted = MailFilter.of(sender=sender, subject=subject, thread_id=thread_id,
                           correlation_id=correlation_id, payload=payload)
    taken = mailbox.claim(me, wanted, limit)
    note = None
    if not taken and wait_s > 0:
        what = f"mail {wanted.describe()}" if wanted else "mail"
        async with ctx.waiting(what):
            try:
                first = await mailbox.receive(me, wanted, wait_s)
            except MailTimeoutError:
                first = None
                note = f"no {what} arrived within {wait_s:g}s"
        if first is not None:
            taken = [first, *mailbox.claim(me, wanted, limit - 1)]
    if taken:
        _remember(ctx, taken[-1].mail.id)
    views = [mailbox.view(d) for d in taken]
    if ack:
        # Acknowledged in the same transaction as this call's result: a task killed
        # before that commit takes the same mail again when it redoes the call.
        for delivery in taken:
            change = mailbox.ack_with_step(delivery)
            if change is not None:
                ctx.commit_with_result(change)
        if ctx.loop is None:
            await mailbox.commit_changes(ctx.take_changes())
    held = [d.mail.id for d in mailbox.held(me) if d not in taken]
    result: dict[str, Any] = {"mail": [summary(v) for v in views],
                              "more_waiting": mailbox.pending(me, wanted)}
    if held:
        result["taken_earlier_not_acknowledged"] = held
    if note:
        result["note"] = note
    return result


@tool
async def read_mail(ctx: ToolContext, mail_id: str) -> dict[str, Any]:
    """Read one mail in full (yours, one you sent, or a post in one of your channels)."""
    mail = await _mailbox(ctx).read(_me(ctx), mail_id)
    _remember(ctx, mail_id)
    return summary(mail, full=True)


@tool
async def reply(
    ctx: ToolContext,
    body: str,
    mail_id: Annotated[str | None, Field(description="the mail to answer; default: the "
                                         "last one you took or read")] = None,
    payload: Payload = None,
    decline: Annotated[bool, Field(description="say you cannot help (the asker keeps "
                                   "waiting for someone who can)")] = False,
) -> dict[str, Any]:
    """Answer a mail: the reply goes where its sender asked, in the same thread, and the
    mail you answer is acknowledged."""
    mailbox = _mailbox(ctx)
    me = _me(ctx)
    target = mail_id or ctx.scratch.get(_LAST)
    if not target:
        raise MailError("there is no mail to reply to: give mail_id, or take mail with "
                        "check_mail first")
    original = await mailbox.read(me, target)
    data = dict(payload or {})
    if decline:
        data["decline"] = True
    sent = await mailbox.reply(me, original, body, payload=data or None,
                               idempotency_key=_key(ctx, "reply", target, body, data))
    acked = await mailbox.ack_id(me, target)
    return {"id": sent.id, "to": sent.mail.recipient, "acknowledged": target if acked else None,
            "duplicate": sent.duplicate}


@tool
async def ack(ctx: ToolContext, mail_id: str) -> dict[str, Any]:
    """Mark a mail as handled, so it is not delivered to you again."""
    done = await _mailbox(ctx).ack_id(_me(ctx), mail_id)
    return {"mail_id": mail_id, "acknowledged": done,
            **({} if done else {"note": "it was already acknowledged"})}


@tool
async def post_to_channel(
    ctx: ToolContext,
    channel: Annotated[str, Field(description="the channel name, with or without '#'")],
    body: str,
    subject: str = "",
    payload: Payload = None,
) -> dict[str, Any]:
    """Post to a channel you belong to; every other member gets it."""
    name = channel.removeprefix("#")
    sent = await _mailbox(ctx).post(_me(ctx), name, body, subject, payload=payload,
                                    reply_to=ctx.agent,
                                    idempotency_key=_key(ctx, "post", name, subject, body,
                                                         payload))
    return {"id": sent.id, "delivered_to": sent.delivered_to, "duplicate": sent.duplicate}


@tool
async def channel_history(
    ctx: ToolContext,
    channel: str,
    limit: Annotated[int, Field(ge=1, le=200)] = 20,
) -> list[dict[str, Any]]:
    """The latest posts of a channel you belong to, oldest first."""
    posts = await _mailbox(ctx).history(_me(ctx), channel.removeprefix("#"), limit)
    return [summary(p) for p in posts]


def _answer(reply: Delivery) -> dict[str, Any]:
    mail = reply.mail.view(reply)
    return {"reply": summary(mail, full=True)}


@tool
async def request(
    ctx: ToolContext,
    to: To,
    subject: str,
    body: str = "",
    payload: Payload = None,
    timeout_s: Timeout = None,
) -> dict[str, Any]:
    """Send a mail and wait for its reply, which is returned (and acknowledged)."""
    mailbox = _mailbox(ctx)
    async with ctx.waiting(f"reply from {to} to {subject!r}"):
        answer = await mailbox.request(
            _me(ctx), to, subject, body, payload=payload, timeout=timeout_s,
            idempotency_key=_key(ctx, "request", to, subject, body, payload))
    _remember(ctx, answer.mail.id)  # reply answers it (a reply that asks back)
    return _answer(answer)


@tool
async def delegate_task(
    ctx: ToolContext,
    agent: Annotated[str, Field(description="the agent to do it")],
    instruction: Annotated[str, Field(description="what the task should do")],
    wait: Annotated[bool, Field(description="wait for the result (true), or go on and "
                                "get it later as mail (false)")] = True,
    timeout_s: Timeout = None,
) -> dict[str, Any]:
    """Ask another agent to run a task. Its result, or its failure, comes back as mail;
    with wait=true this tool waits for it and returns it."""
    mailbox = _mailbox(ctx)
    me = _me(ctx)
    agent = agent.removeprefix(REMOTE_PREFIX)  # 'a2a:NAME' is the remote agent NAME
    delegation = await mailbox.delegate(me, agent, instruction,
                                        key=_key(ctx, "delegate", agent, instruction),
                                        reply_to=me if wait else ctx.agent)
    if not wait:
        return {"task_id": delegation.task_id, "correlation_id": delegation.correlation_id,
                "note": f"the result will come as mail to {ctx.agent!r} with this "
                        "correlation_id (check_mail correlation_id=...)"}
    async with ctx.waiting(f"task {delegation.task_id} of {agent}"):
        outcome = await mailbox.wait_delegation(me, delegation, timeout_s)
    if isinstance(outcome, TaskRecord):
        return {"task_id": outcome.id, "state": outcome.state.value, "result": outcome.result,
                "error": outcome.error}
    payload = outcome.mail.payload or {}
    if payload.get("input_required"):  # the task asks first (a remote agent's question)
        _remember(ctx, outcome.mail.id)
        return {"task_id": delegation.task_id, "state": "input-required",
                "question": outcome.mail.body, "mail_id": outcome.mail.id,
                "correlation_id": delegation.correlation_id,
                "note": "answer with reply (it goes to that task); its result then comes "
                        "as mail with this correlation_id (check_mail correlation_id=...)"}
    state = payload.get("state")
    result: dict[str, Any] = {"task_id": delegation.task_id, "state": state}
    result["result" if state == "done" else "error"] = outcome.mail.body
    return result


@tool
async def ask_for_help(
    ctx: ToolContext,
    question: str,
    to: Annotated[str | None, Field(description="a channel or agent to ask; default: the "
                                    "project's helpers channel")] = None,
    timeout_s: Timeout = None,
) -> dict[str, Any]:
    """Ask for help and wait for the first useful answer (declines are skipped)."""
    mailbox = _mailbox(ctx)
    where = to or f"#{mailbox.config.helpers_channel}"
    async with ctx.waiting(f"help from {where}"):
        answer, declined = await mailbox.ask_for_help(
            _me(ctx), question, to=to, timeout=timeout_s,
            idempotency_key=_key(ctx, "help", where, question))
    return {"answer": answer.mail.body, "from": answer.mail.sender, "mail_id": answer.mail.id,
            "declined": declined}


MAIL_TOOLS: tuple[Tool, ...] = (send_mail, check_mail, read_mail, reply, ack, post_to_channel,
                                channel_history, request, delegate_task, ask_for_help)
