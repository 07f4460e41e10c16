"""Mail as a person sends and reads it, and 1-1 conversations with an agent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from wakeful.errors import MailError
from wakeful.server import views
from wakeful.server.errors import NotFound
from wakeful.server.identity import CallerDep, speaking_as
from wakeful.server.routes.deps import Limit, RuntimeDep
from wakeful.server.schemas import DEFAULT_PERSON, NewMail, person_address

router = APIRouter(prefix="/api", tags=["mail"])


def _as_person(value: str, where: str) -> str:
    try:
        return person_address(value)
    except ValueError as exc:
        raise MailError(f"{where}: {exc}") from None


@router.post("/mail", status_code=201, summary="Send a mail as a person")
async def send_mail(body: NewMail, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    fields = body.model_dump(exclude={"sender", "to", "subject", "body"}, exclude_none=True)
    sender = speaking_as(caller, body.sender, "body.sender")
    sent = await runtime.mailbox.send(sender, body.to, body.subject, body.body, **fields)
    return {"mail": views.mail_view(sent.mail.view()), "duplicate": sent.duplicate,
            "delivered_to": sent.delivered_to}


@router.get("/mail", summary="Deliveries, newest last, filtered")
async def list_mail(runtime: RuntimeDep, owner: str | None = None, status: str | None = None,
                    sender: str | None = None, limit: Limit = 100) -> dict[str, Any]:
    found = await runtime.mailbox.list_mail(owner=owner, status=status, sender=sender,
                                            limit=limit)
    return {"mail": [views.mail_view(m) for m in found]}


@router.get("/mail/{mail_id}", summary="One mail and where it was delivered")
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
    deliveries = await runtime.mailbox.deliveries(mail_id)
    return {"mail": views.mail_view(mail),
            "deliveries": [{"owner": d.owner, "status": d.status, "attempts": d.attempts,
                            "read_at": d.read_at, "acked_at": d.acked_at}
                           for d in deliveries]}


@router.get("/conversations/{agent}", summary="A person's 1-1 conversation with an agent")
async def conversation(agent: str, runtime: RuntimeDep,
                       person: str = Query(DEFAULT_PERSON, description="'person:NAME' or NAME"),
                       limit: Limit = 100,
                       mark_read: bool = Query(False, description="mark the agent's mail "
                                               "to this person read (it has been shown)")
                       ) -> dict[str, Any]:
    runtime.agent(agent)
    who = _as_person(person, "query.person")
    mails = await runtime.mailbox.conversation(who, agent, limit=limit)
    if mark_read:
        shown = {m.id for m in mails}
        for status in ("pending", "delivered"):  # not yet read by the person
            for unread in await runtime.mailbox.list_mail(owner=who, status=status,
                                                          limit=1000):
                if unread.id in shown:
                    await runtime.mailbox.read(who, unread.id)
    return {"agent": agent, "person": who, "mail": [views.mail_view(m) for m in mails]}
