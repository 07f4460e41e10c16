"""Mail as a person sends and reads it, and 1-1 conversations with an agent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from wakeful.core.mail_records import Envelope
from wakeful.errors import MailError
from wakeful.server import views
from wakeful.server.errors import NotFound
from wakeful.server.identity import CallerDep, speaking_as
from wakeful.server.paging import After, SeqAfter, decode, deliveries_after, encode, mail_after
from wakeful.server.responses import ConversationPage, MailDetail, MailPage, SentMail
from wakeful.server.routes.deps import Limit, RuntimeDep
from wakeful.server.schemas import DEFAULT_PERSON, NewMail, person_address

router = APIRouter(prefix="/api", tags=["mail"])


def _as_person(value: str, where: str) -> str:
    try:
        return person_address(value)
    except ValueError as exc:
        raise MailError(f"{where}: {exc}") from None


@router.post("/mail", status_code=201, response_model=SentMail, summary="Send a mail as a person")
async def send_mail(body: NewMail, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    fields = body.model_dump(exclude={"sender", "to", "subject", "body"}, exclude_none=True)
    sender = speaking_as(caller, body.sender, "body.sender")
    sent = await runtime.mailbox.send(sender, body.to, body.subject, body.body, **fields)
    return {"mail": views.mail_view(sent.mail.view()), "duplicate": sent.duplicate,
            "delivered_to": sent.delivered_to}


@router.get("/mail", response_model=MailPage, summary="Deliveries, newest last, filtered; "
            "with `after` (the `next` of a page) the ones after it, oldest first")
async def list_mail(runtime: RuntimeDep, owner: str | None = None, status: str | None = None,
                    sender: str | None = None, limit: Limit = 100,
                    after: After = None) -> dict[str, Any]:
    if after is None:
        found = await runtime.mailbox.list_mail(owner=owner, status=status, sender=sender,
                                                limit=limit)
        return {"mail": [views.mail_view(m) for m in found], "next": None}
    # A mail has a delivery per mailbox: a delivery is placed by (mail seq, owner).
    at = decode(after).get("delivery")
    position = (at[0], str(at[1])) if (isinstance(at, list) and len(at) == 2
                                       and isinstance(at[0], int)
                                       and not isinstance(at[0], bool)) else (0, "")
    page, following = await deliveries_after(runtime.mailbox, position, limit, owner=owner,
                                             status=status, sender=sender)
    more = encode({"delivery": list(following)}) if following is not None else None
    return {"mail": [views.mail_view(m) for m in page], "next": more}


@router.get("/mail/{mail_id}", response_model=MailDetail,
            summary="One mail and where it was delivered")
async def get_mail(mail_id: str, runtime: RuntimeDep, reader: str | None = Query(
        None, description="read it as this person ('person:ada'): marks it read")
        ) -> dict[str, Any]:
    who = None if reader is None else _as_person(reader, "query.reader")
    try:
        mail = await runtime.mailbox.read(who, mail_id)
    except MailError as exc:
        if str(exc).startswith("no mail with id"):
            raise NotFound(str(exc)) from None
        raise
    if mail.seq is None:
        # read from a delivery in memory: its place in the conversation (seq) is the
        # store's, and the UI needs it to place the mail and to tell new from old
        stored = await runtime.mailbox.store.get_mail(mail_id)
        if stored is not None and stored.seq is not None:
            mail = mail.model_copy(update={"seq": stored.seq})
    deliveries = await runtime.mailbox.deliveries(mail_id)
    return {"mail": views.mail_view(mail),
            "deliveries": [{"owner": d.owner, "status": d.status, "attempts": d.attempts,
                            "read_at": d.read_at, "acked_at": d.acked_at}
                           for d in deliveries]}


@router.get("/conversations/{agent}", response_model=ConversationPage,
            summary="A person's 1-1 conversation with an agent, oldest first: the newest "
            "`limit` mails, or those `before` a seq (`older`), or `after` one (`next`)")
async def conversation(agent: str, runtime: RuntimeDep,
                       person: str = Query(DEFAULT_PERSON, description="'person:NAME' or NAME"),
                       limit: Limit = 100, after: SeqAfter = None,
                       before: int | None = Query(None, ge=1, description=(
                           "a mail seq: the `limit` mails before it (`older` of a page)")),
                       mark_read: bool = Query(False, description="mark the agent's mail "
                                               "to this person read (it has been shown)")
                       ) -> dict[str, Any]:
    runtime.agent(agent)
    who = _as_person(person, "query.person")
    await runtime.mailbox.flush()  # read this process's own writes

    async def fetch(before_seq: int | None, count: int) -> list[Envelope]:
        return await runtime.mailbox.store.list_mail(between=(who, agent), limit=count,
                                                     before_seq=before_seq)

    more = None
    if after is not None:
        found, more = await mail_after(runtime.mailbox.store, after, limit, between=(who, agent))
    else:
        found = await fetch(before, limit + 1)
    older = found[-limit].seq if after is None and len(found) > limit else None
    mails = [m.view() for m in (found if after is not None else found[-limit:])]
    if mark_read:
        shown = {m.id for m in mails}
        for status in ("pending", "delivered"):  # not yet read by the person
            for unread in await runtime.mailbox.list_mail(owner=who, status=status,
                                                          limit=1000):
                if unread.id in shown:
                    await runtime.mailbox.read(who, unread.id)
    return {"agent": agent, "person": who, "mail": [views.mail_view(m) for m in mails],
            "next": more, "older": older}
