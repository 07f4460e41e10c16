"""Request/reply and delegation: conversations that wait for an answer, built on
sending and reading (a reply is found by its correlation id).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import structlog

from wakeful.core.backoff import next_wait
from wakeful.core.mail import Mail, MailFilter, parse_address
from wakeful.core.mail_records import (
    ACKED,
    Delegation,
    DelegationChange,
    Delivery,
    Envelope,
    Sent,
)
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState
from wakeful.errors import ConflictError, MailError, MailTimeoutError, OutcomeUnknownError
from wakeful.mailbox.reading import Reading
from wakeful.mailbox.sending import Sending
from wakeful.mailbox.state import _owners_of

if TYPE_CHECKING:
    from wakeful.mailbox.host import MailHost

log = structlog.get_logger("wakeful.mailbox")



class Requests(Sending, Reading):
    """The mailbox's request/reply, asking for help, and delegated tasks."""

    # request / reply ---------------------------------------------------------
    async def reply(self, sender: str, original: Envelope | Mail, body: str = "", *,
                    subject: str | None = None, payload: dict[str, Any] | None = None,
                    to: str | None = None, idempotency_key: str | None = None) -> Sent:
        """Answer ``original``: to its reply-to address, in its thread, with its
        correlation id, so a sender waiting in :meth:`request` wakes."""
        subject = subject if subject is not None else (
            original.subject if original.subject.lower().startswith("re:")
            else f"Re: {original.subject}" if original.subject else "")
        return await self.send(sender, to or original.reply_to, subject[
            :self.config.max_subject_chars], body, payload=payload,
            thread_id=original.thread_id, in_reply_to=original.id,
            correlation_id=original.correlation_id, causation_id=original.id,
            idempotency_key=idempotency_key)

    async def request(self, reader: str, to: str, subject: str = "", body: str = "", *,
                      payload: dict[str, Any] | None = None, timeout: float | None = None,
                      idempotency_key: str | None = None, priority: str = "normal"
                      ) -> Delivery:
        """Send a mail and wait for its reply (acknowledged for you)."""
        timeout = timeout if timeout is not None else self.config.request_timeout_s
        sent = await self.send(reader, to, subject, body, payload=payload,
                               correlation_id=self._ids("c"), reply_to=reader,
                               idempotency_key=idempotency_key, priority=priority)
        return await self._await_reply(reader, sent, timeout, f"reply from {to}")

    async def _await_reply(self, reader: str, sent: Sent, timeout: float, what: str
                           ) -> Delivery:
        cid = sent.mail.correlation_id
        assert cid is not None
        if sent.duplicate:  # a resumed caller: the reply may have been handled already
            handled = await self._handled_reply(reader, sent.mail)
            if handled is not None:
                return handled
        try:
            reply = await self.receive(reader, MailFilter(correlation_id=cid), timeout)
        except MailTimeoutError:
            raise MailTimeoutError(f"no {what} to mail {sent.id} "
                                   f"({sent.mail.subject!r}) within {timeout:g}s") from None
        await self.ack(reply)
        return reply

    async def _handled_reply(self, reader: str, request: Envelope) -> Delivery | None:
        owners = _owners_of(reader)
        for mail in await self.store.list_mail(correlation_id=request.correlation_id):
            if mail.in_reply_to != request.id:
                continue
            for delivery in await self.store.deliveries_of(mail.id):
                if delivery.owner in owners and delivery.status == ACKED:
                    return delivery
        return None

    async def ask_for_help(self, reader: str, question: str, *, to: str | None = None,
                           subject: str = "help wanted", payload: dict[str, Any] | None = None,
                           timeout: float | None = None, idempotency_key: str | None = None
                           ) -> tuple[Delivery, int]:
        """Post a question (to the helpers channel, or ``to``) and wait for the first
        useful reply: one with a body that is not a decline (payload ``decline: true``).

        Returns the reply (acknowledged) and how many helpers declined first.
        """
        timeout = timeout if timeout is not None else self.config.request_timeout_s
        target = to or f"#{self.config.helpers_channel}"
        if target.startswith("#") and target[1:] not in self._channels:
            raise MailError(f"no channel {target} to ask for help in: create it (wakeful "
                            f"channel create {target[1:]} --member AGENT) or name an agent "
                            "in 'to'")
        sent = await self.send(reader, target, subject, question, payload=payload,
                               correlation_id=self._ids("c"), reply_to=reader,
                               idempotency_key=idempotency_key, priority="high")
        declined = 0
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            reply = await self._await_reply(reader, sent, left,
                                            f"useful help ({declined} declined)")
            useful = reply.mail.body.strip() and not (reply.mail.payload or {}).get("decline")
            if useful:
                return reply, declined
            declined += 1

    # delegation ---------------------------------------------------------------
    async def delegate(self, reader: str, agent: str, instruction: str, *,
                       key: str | None = None, reply_to: str | None = None) -> Delegation:
        """Start a task on ``agent``; its result or failure comes back as mail to
        ``reply_to`` (default: ``reader``) carrying the delegation's correlation id.

        With ``key``, delegating again under the same key (a task resumed after a
        crash repeating its tool call) returns the first delegation.
        """
        runtime = self._require_runtime("delegate a task")
        self._check_agent(agent)
        origin = parse_address(reader)
        if key is not None:
            for existing in self._delegations.values():
                if existing.delegator == reader and existing.key == key:
                    return existing
            found = await self._stored_delegation(reader, key)
            if found is not None:
                return found
        record = runtime.new_task(agent, instruction, created_by=reader,
                                  parent_id=origin.task_id)
        delegation = Delegation(task_id=record.id, agent=agent, delegator=reader,
                                reply_to=reply_to or reader, correlation_id=self._ids("c"),
                                key=key, created_at=time.time())
        # The task and its delegation commit together: a delegator killed in between
        # finds its delegation (and only one task) when it redoes the call.
        while True:
            try:
                await runtime.store.create_task(record,
                                                mail=[DelegationChange(delegation, True)])
                break
            except ConflictError:
                found = await self._stored_delegation(reader, key)
                if found is not None:
                    return found
                raise
            except OutcomeUnknownError:
                # Its commit's outcome was lost with the connection: keyed, it is
                # looked up and made again if it is not there (never twice).
                if key is None:
                    raise
                stored = await self._once_known(reader, key)
                if stored is not None and stored.task_id != record.id:
                    return stored  # another run of this call made it meanwhile
                if stored is not None:
                    break  # it was: the same task, announced and handed over below
        self._delegations[record.id] = delegation
        self.events.emit("mail.delegated", agent=origin.agent, task_id=origin.task_id,
                         correlation_id=delegation.correlation_id, causation_id=record.id,
                         data={"task_id": record.id, "to_agent": agent,
                               "instruction": instruction[:500],
                               "reply_to": delegation.reply_to})
        runtime.launch_task(record)
        return delegation

    async def _once_known(self, reader: str, key: str) -> Delegation | None:
        """The delegation stored under ``key``, if any, after a commit whose outcome was
        lost: asked until the store answers (a read just after a lost connection may
        fail too, and giving up would leave the model to delegate again, twice)."""
        wait = 0.0
        while True:
            wait = next_wait(wait)
            await asyncio.sleep(wait)
            try:
                return await self._stored_delegation(reader, key)
            except Exception as exc:  # still cut off: ask again
                log.warning("delegation: the store cannot yet say whether it was stored",
                            key=key, error=repr(exc))

    async def _stored_delegation(self, reader: str, key: str | None) -> Delegation | None:
        if key is None:
            return None
        for existing in await self.store.load_delegations(unreported_only=False):
            if existing.delegator == reader and existing.key == key:
                return existing
        return None

    async def wait_delegation(self, reader: str, delegation: Delegation,
                              timeout: float | None = None) -> Delivery | TaskRecord:
        """Wait for a delegated task's outcome mail (acknowledged for you). If that mail
        was already handled (a resumed caller), the task itself is returned."""
        runtime = self._require_runtime("wait for a delegated task")
        timeout = timeout if timeout is not None else self.config.request_timeout_s
        wanted = MailFilter(correlation_id=delegation.correlation_id)
        taken = self.claim(reader, wanted, 1)
        if not taken and delegation.reported_at is not None:
            return await runtime.get_task(delegation.task_id)  # its mail was handled
        try:
            reply = taken[0] if taken else await self.receive(reader, wanted, timeout)
        except MailTimeoutError:
            raise MailTimeoutError(f"task {delegation.task_id} ({delegation.agent}) did not "
                                   f"finish within {timeout:g}s; its result will still come "
                                   f"as mail to {delegation.reply_to!r}") from None
        await self.ack(reply)
        return reply

    def _require_runtime(self, action: str) -> MailHost:
        if self._runtime is None:
            raise MailError(f"cannot {action}: the mailbox is not part of a running runtime")
        return self._runtime

    def _on_settle(self, record: TaskRecord) -> None:
        """Runtime hook: a task reached its final outcome."""
        self._settled.add(record.id)
        delegation = self._delegations.get(record.id)
        if delegation is not None and delegation.reported_at is None and self._opened:
            self._scope.spawn(self._report(delegation, record), name=f"mailbox:report:"
                              f"{record.id}")
        elif delegation is None and "/" in record.created_by and self._opened:
            # Delegated through another worker: its delegation is in the store.
            self._scope.spawn(self._report_stored(record), name=f"mailbox:report:{record.id}")

    async def _report_stored(self, record: TaskRecord) -> None:
        try:
            delegation = await self.store.get_delegation(record.id)
        except Exception as exc:
            log.error("mailbox: could not read a delegation", task=record.id, error=repr(exc))
            return
        if delegation is not None and delegation.reported_at is None:
            await self._report(delegation, record)

    async def _report_finished(self, delegations: list[Delegation]) -> None:
        """At start: report delegated tasks that ended while no runtime was watching."""
        runtime = self._require_runtime("report delegations")
        for delegation in delegations:
            record = await runtime.store.get_task(delegation.task_id)
            if record is not None and record.state.ended:
                await self._report(delegation, record)

    async def _report(self, delegation: Delegation, record: TaskRecord) -> None:
        try:
            state = record.state.value
            outcome = record.result if record.state is TaskState.DONE else (
                record.error or f"the task was {state}")
            body = outcome or "(no result)"
            limit = self.config.max_body_chars
            truncated = len(body) > limit
            await self.send(
                f"{record.agent}/{record.id}", delegation.reply_to,
                f"task {record.id} {state}"[:self.config.max_subject_chars],
                body[:limit], payload={"task_id": record.id, "agent": record.agent,
                                       "state": state, "error_kind": record.error_kind,
                                       "truncated": truncated},
                correlation_id=delegation.correlation_id, causation_id=record.id,
                idempotency_key=f"delegation-result:{record.id}",
                priority="normal" if record.state is TaskState.DONE else "high")
            delegation.reported_at = time.time()
            await self._committer.commit(DelegationChange(delegation))
            self._delegations.pop(record.id, None)
        except Exception as exc:  # reported at the next start instead
            log.error("mailbox: could not report a delegated task", task=record.id,
                      error=repr(exc))
