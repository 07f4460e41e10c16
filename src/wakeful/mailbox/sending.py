"""Sending: validating what a sender wrote (sender, size, recipients) and storing the
mail with one delivery per mailbox it reaches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from wakeful.core.mail import PRIORITIES, Address, AddressKind, MailDraft, parse_address
from wakeful.core.mail_records import PENDING, Change, Delivery, Envelope, NewMail, Sent
from wakeful.errors import MailError, MailTooLargeError
from wakeful.mailbox.delivery import Delivering


def _describe(error: ValidationError, sender: str) -> str:
    problems = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(mail)"
        msg = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"field {loc!r}: {msg}")
    return f"malformed mail from {sender!r}: " + "; ".join(problems)


class Sending(Delivering):
    """The mailbox's sending side: validation and storing new mail."""

    # validation --------------------------------------------------------------
    def _check_sender(self, sender: str) -> Address:
        address = self._senders.get(sender)
        if address is not None:
            return address
        try:
            address = parse_address(sender)
        except ValueError as exc:
            raise MailError(f"invalid sender: {exc}") from None
        if address.kind in (AddressKind.CHANNEL, AddressKind.BROADCAST):
            raise MailError(f"{sender!r} cannot send mail: senders are agents, tasks and "
                            "people")
        if address.agent is not None:
            self._check_agent(address.name)
        if len(self._senders) < 100_000:  # agents are never removed: safe to remember
            self._senders[sender] = address
        return address

    def draft(self, sender: str, **fields: Any) -> MailDraft:
        """Validate what a sender wrote; MailError names each field that is wrong."""
        try:
            return MailDraft(**fields)
        except ValidationError as exc:
            raise MailError(_describe(exc, sender)) from None

    def _check_size(self, sender: str, draft: MailDraft) -> str | None:
        limits = self.config
        where = f"mail from {sender!r} to {draft.to!r}"
        if len(draft.subject) > limits.max_subject_chars:
            raise MailTooLargeError(f"{where}: the subject is {len(draft.subject):,} "
                                    f"characters; the limit is {limits.max_subject_chars:,} "
                                    "(mailbox.max_subject_chars)")
        if len(draft.body) > limits.max_body_chars:
            raise MailTooLargeError(f"{where}: the body is {len(draft.body):,} characters; "
                                    f"the limit is {limits.max_body_chars:,} "
                                    "(mailbox.max_body_chars)")
        if draft.payload is None:
            if not draft.subject and not draft.body:
                raise MailError(f"{where} is empty: give it a subject, a body or a payload")
            return None
        payload_json = json.dumps(draft.payload, ensure_ascii=False, separators=(",", ":"))
        size = len(payload_json.encode())
        if size > limits.max_payload_bytes:
            raise MailTooLargeError(f"{where}: the payload is {size:,} bytes of JSON; the "
                                    f"limit is {limits.max_payload_bytes:,} "
                                    "(mailbox.max_payload_bytes)")
        return payload_json

    def _recipients(self, sender: Address, target: Address) -> tuple[list[str], str | None]:
        """The mailboxes a mail to ``target`` reaches, and its channel if any."""
        kind = target.kind
        if kind is AddressKind.AGENT:
            if target.name not in self._agents_seen:
                self._check_agent(target.name)
                self._agents_seen.add(target.name)  # agents are never removed
            return [target.name], None
        if kind is AddressKind.TASK:
            self._check_agent(target.name)
            # A task that has ended reads no more mail: late mail goes to its agent.
            owner = target.name if target.task_id in self._settled else str(target)
            return [owner], None
        if kind is AddressKind.PERSON:
            return [str(target)], None
        me = sender.agent or str(sender)
        if kind is AddressKind.BROADCAST:
            known = self._known_agents()
            if known is None:
                raise MailError("broadcast ('*') needs the runtime's list of agents")
            return [a for a in known if a != me], None
        channel = self._channel(target.name)
        if me not in channel.members:
            self._deny(str(sender), f"post to #{target.name}",
                       f"{me!r} is not a member of #{target.name}")
        return [m for m in channel.members if m != me and not m.startswith("person:")], \
            target.name

    # sending ---------------------------------------------------------------
    async def send(self, sender: str, to: str, subject: str = "", body: str = "",
                   **fields: Any) -> Sent:
        """Send a mail; returns once it is stored. See :class:`MailDraft` for fields."""
        try:
            draft = MailDraft(to=to, subject=subject, body=body, **fields)
        except ValidationError as exc:
            raise MailError(_describe(exc, sender)) from None
        return await self.send_draft(sender, draft)

    async def send_draft(self, sender: str, draft: MailDraft) -> Sent:
        change = self._prepare(sender, draft)
        if self._direct is not None:  # in memory: nothing to wait for
            self._direct.add_mail(change)
            self._after_commit((change,))
        else:
            await self._committer.commit(change)
        return self._sent(change)

    async def send_many(self, sender: str, drafts: Iterable[MailDraft]) -> list[Sent]:
        """Send several mails in one batch (one transaction), in order."""
        changes = [self._prepare(sender, d) for d in drafts]
        await self._committer.commit_all(changes)
        return [self._sent(c) for c in changes]

    def _sent(self, change: NewMail) -> Sent:
        if change.duplicate_of is not None:
            return Sent(change.duplicate_of, True, 0)
        return Sent(change.mail, False, len(change.deliveries))

    def _prepare(self, sender: str, draft: MailDraft) -> NewMail:
        if not self._opened:
            raise MailError("the mailbox is not open")
        origin = self._check_sender(sender)
        payload_json = self._check_size(sender, draft)
        owners, channel = self._recipients(origin, parse_address(draft.to))
        mail_id = self._ids()
        # Positional: this runs once per mail, and keyword construction costs twice as much.
        mail = Envelope(
            mail_id, sender, draft.to, draft.subject, draft.body, draft.payload,
            PRIORITIES[draft.priority], draft.thread_id or mail_id, draft.in_reply_to,
            draft.reply_to or (origin.agent or sender), draft.correlation_id,
            draft.causation_id, draft.idempotency_key, time.time(), None, payload_json)
        order = self._order
        deliveries = [Delivery(mail, owner, PENDING, 0, None, None, None, None, None,
                               next(order), None, channel) for owner in owners]
        # Mail for an agent another worker runs is left for that worker to pick up.
        wakeup = not self.live or (self._owned is not None
                                   and not all(map(self._mine, owners)))
        change = NewMail(mail, deliveries, wakeup=wakeup)
        if self.config.log_every_send and self.events.recording:
            change.events.append(self._sent_event(mail, len(deliveries)))
        return change

    def _sent_event(self, mail: Envelope, reached: int) -> Any:
        origin = parse_address(mail.sender)
        return self.events.make(
            "mail.sent", agent=origin.agent, task_id=origin.task_id,
            correlation_id=mail.correlation_id, causation_id=mail.causation_id,
            data={"mail_id": mail.id, "from": mail.sender, "to": mail.recipient,
                  "subject": mail.subject[:200], "thread_id": mail.thread_id,
                  "in_reply_to": mail.in_reply_to, "deliveries": reached})

    def _publish_sent(self, mail: Envelope, reached: int) -> None:
        if self.events.listened:
            self.events.publish(self._sent_event(mail, reached))

    def _after_commit(self, changes: Sequence[Change]) -> None:
        """Committed: new mail becomes visible to its readers, in order."""
        listened = self.events.listened
        for change in changes:
            if type(change) is not NewMail or change.duplicate_of is not None:
                continue
            if listened:
                if change.events:
                    for event in change.events:
                        self.events.publish(event)
                else:
                    self._publish_sent(change.mail, len(change.deliveries))
            if self.live:
                self._arrive_all(change.deliveries)
