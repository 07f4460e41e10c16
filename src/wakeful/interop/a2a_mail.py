"""Mail from agents to a remote A2A agent: each mail is a task forwarded to it.

The responder answers people's mail only (mail between local agents is for their
tasks to read). A remote agent has no task of its own reading mail, so mail that a
local task sends to ``a2a:NAME`` (``send_mail``, ``request``) would wait forever.
Here each such mail starts a forwarding task (its cause is the mail, its creator the
sender), and the task's outcome is the reply to the mail: a ``request`` wakes with it.

Durability: the mail stays unacknowledged until its reply is sent. A restart finds it
pending again: a task already started for it is found by its cause (and answered if it
ended meanwhile); otherwise one is started. The reply has an idempotency key, so it
is sent once.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import structlog

from wakeful.core.mail import Mail, parse_address
from wakeful.core.mail_records import PENDING, Delivery, Envelope
from wakeful.core.records import TaskRecord
from wakeful.core.scope import TaskScope
from wakeful.core.states import TaskState
from wakeful.errors import ConflictError

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime

log = structlog.get_logger("wakeful.interop")


def _from_person(mail: Envelope | Mail) -> bool:
    return mail.sender.startswith("person:")


class RemoteMail:
    """Forwards agents' mail to remote agents as tasks and replies with the outcome."""

    def __init__(self, runtime: Runtime, agents: Collection[str]) -> None:
        self.runtime = runtime
        self.agents = frozenset(agents)
        self._scope = TaskScope("interop:remote-mail")

    async def start(self) -> None:
        if not self.agents:
            return
        mailbox = self.runtime.mailbox
        mailbox.on_arrival(self._arrived)
        self.runtime.on_settle(self._settled)
        for agent in sorted(self.agents):  # mail that waited while nothing ran
            for mail in await mailbox.list_mail(owner=agent, status=PENDING, limit=1000):
                if not _from_person(mail) and not mail.recipient.startswith("#"):
                    self._scope.spawn(self._forward(agent, mail.id),
                                      name=f"interop:forward:{mail.id}")

    async def stop(self) -> None:
        await self._scope.aclose()

    def _arrived(self, delivery: Delivery) -> None:
        owner = parse_address(delivery.owner)
        if (owner.name in self.agents and owner.task_id is None and not delivery.channel
                and delivery.status == PENDING and not _from_person(delivery.mail)):
            self._scope.spawn(self._forward(owner.name, delivery.mail.id),
                              name=f"interop:forward:{delivery.mail.id}")

    async def _forward(self, agent: str, mail_id: str) -> None:
        runtime = self.runtime
        try:
            if not runtime.ownership.owns(agent):
                return  # the worker that owns the agent forwards it
            started = await runtime.store.tasks_caused_by(mail_id, agent)
            if not started:
                mail = await runtime.mailbox.store.get_mail(mail_id)
                if mail is None:
                    return
                text = mail.body if not mail.subject or mail.subject in mail.body else (
                    f"{mail.subject}\n\n{mail.body}")
                try:
                    started = [await runtime.create_task(
                        agent, text, created_by=mail.sender, cause_id=mail.id,
                        trace_id=mail.correlation_id)]
                except ConflictError:  # started meanwhile (one task per mail)
                    started = await runtime.store.tasks_caused_by(mail_id, agent)
                runtime.events.emit("a2a.remote.mail", agent=agent, task_id=started[0].id,
                                    causation_id=mail.id, data={
                                        "mail_id": mail.id, "from": mail.sender})
            if started and started[0].state.ended:
                await self._answer(started[0])
        except Exception as exc:  # one bad mail must not stop the others
            log.error("forwarding mail to a remote agent failed", mail=mail_id,
                      error=repr(exc))

    def _settled(self, record: TaskRecord) -> None:
        if record.agent in self.agents and record.cause_id:
            self._scope.spawn(self._answer(record), name=f"interop:answer:{record.id}")

    async def _answer(self, record: TaskRecord) -> None:
        mailbox = self.runtime.mailbox
        try:
            assert record.cause_id is not None
            mail = await mailbox.store.get_mail(record.cause_id)
            if mail is None or _from_person(mail):
                return  # people's mail is the responder's
            if record.state is TaskState.DONE:
                body = record.result or "(no answer)"
            else:
                body = (f"{record.agent} could not answer: "
                        f"{record.error or f'the task was {record.state.value}'}")
            payload: dict[str, Any] = {"task_id": record.id, "agent": record.agent,
                                       "state": record.state.value}
            await mailbox.reply(record.agent, mail, body, payload=payload,
                                idempotency_key=f"answer:{record.id}")
            await mailbox.ack_id(record.agent, mail.id)
        except Exception as exc:
            log.error("answering mail from a remote agent's task failed", task=record.id,
                      error=repr(exc))
