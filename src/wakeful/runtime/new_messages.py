"""A person's new message while the agent is still answering them: ``on_new_message``.

When a person writes 1-1 to an agent that has a task still answering that same person
(a task the responder started for their earlier 1-1 mail, not yet ended), the agent's
``on_new_message`` decides:

* ``merge`` (default): the message joins that task at its next step boundary, as a new
  user message of its conversation; the mail is acknowledged in the same transaction
  as that message is stored. A task that ends before it takes the message (its last
  step was already under way) leaves it to a new task of its own.
* ``queue``: a task for the message is stored now and starts when the running one ends.
* ``interrupt``: the running task is cancelled, and a new one answers the new message.
* ``reject``: the message is answered with a refusal, and no task starts.

Each outcome is an event (``message.merged``, ``message.queued``,
``message.interrupted``, ``message.rejected``) and a short note in the conversation: a
reply to the person's message with payload ``{"note": OUTCOME, "task_id": ...}``,
which the web UI shows as a system note.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from wakeful.core.mail_records import Delivery, Envelope
from wakeful.core.records import TaskRecord
from wakeful.models.base import Message

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime
    from wakeful.runtime.task_loop import TaskLoop

NOTES = {
    "merged": "(added to the answer I am working on)",
    "queued": "(I will answer this after the message I am answering now)",
    "interrupted": "(I stopped my previous answer to answer this one)",
}


class NewMessages:
    """The responder's policy for new messages; holds what waits to be merged or
    started (in memory: a lost merge is a mail not acknowledged, delivered again)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._merged: dict[str, dict[str, Delivery]] = {}  # task -> mail id -> delivery
        self._queued: dict[str, list[TaskRecord]] = {}  # running task -> tasks after it
        self.interrupted: set[str] = set()  # tasks cancelled for a newer message

    def running_answer(self, agent: str, sender: str,
                       answering: dict[str, tuple[Envelope, str | None]]) -> str | None:
        """The task of ``agent`` still answering ``sender`` 1-1, if there is one."""
        runner = self.runtime.agents.get(agent)
        if runner is None:
            return None
        live = {r.id for r in runner.running_tasks} | {r.id for r in runner.queued_tasks}
        for task_id, (mail, channel) in answering.items():
            if channel is None and mail.sender == sender and task_id in live:
                return task_id
        return None

    def merging(self, mail_id: str) -> bool:
        return any(mail_id in held for held in self._merged.values())

    def merge(self, task_id: str, delivery: Delivery) -> None:
        """Hold ``delivery`` for ``task_id``'s next step boundary. The person is told
        once it is merged (stored in that conversation), not now: a task that ends
        first, or a worker that stops first, leaves it to be answered on its own."""
        self._merged.setdefault(task_id, {})[delivery.mail.id] = delivery

    def queue_after(self, running: str, record: TaskRecord, delivery: Delivery) -> None:
        self._queued.setdefault(running, []).append(record)
        self._note(delivery, "queued", running, new_task=record.id)

    async def interrupt(self, running: str, delivery: Delivery) -> None:
        self.interrupted.add(running)
        self._note(delivery, "interrupted", running)
        await self.runtime.cancel_task(running)

    async def reject(self, agent: str, running: str, delivery: Delivery) -> None:
        mailbox = self.runtime.mailbox
        body = (f"I am still answering your previous message (task {running}), so I did "
                "not take this one (on_new_message: reject). Send it again once I have "
                "answered.")
        await mailbox.reply(agent, delivery.mail, body, payload={
            "note": "rejected", "task_id": running, "in_reply_to": delivery.mail.id},
            idempotency_key=f"note:{delivery.mail.id}")
        self._event("rejected", delivery, running)

    def _note(self, delivery: Delivery, outcome: str, task_id: str,
              new_task: str | None = None) -> None:
        self._event(outcome, delivery, task_id, new_task)
        self.runtime.responder.spawn_note(delivery.owner, delivery.mail, NOTES[outcome], {
            "note": outcome, "task_id": new_task or task_id,
            "in_reply_to": delivery.mail.id})

    def _event(self, outcome: str, delivery: Delivery, task_id: str,
               new_task: str | None = None) -> None:
        mail = delivery.mail
        self.runtime.events.emit(f"message.{outcome}", agent=delivery.owner, task_id=task_id,
                                 data={"mail_id": mail.id, "person": mail.sender,
                                       "policy": outcome, "task_id": task_id,
                                       **({"new_task_id": new_task} if new_task else {})})

    # the task loop's side ------------------------------------------------
    async def take_into(self, loop: TaskLoop) -> None:
        """At a step boundary: add the messages merged into this task to its
        conversation, storing them with the acknowledgement of their mail."""
        held = self._merged.pop(loop.id, None)
        if not held:
            return
        mailbox = self.runtime.mailbox
        new = [Message(role="user", content=d.mail.body) for d in held.values()]
        changes = [c for c in (mailbox.ack_with_step(d) for d in held.values())
                   if c is not None]
        await self.runtime.store.save_step(loop.id, len(loop.messages),
                                           [m.to_dict() for m in new],
                                           fence=loop.agent.fence, mail=changes)
        loop.messages.extend(new)
        for delivery in held.values():
            self._note(delivery, "merged", loop.id)

    def forget(self, task_ids: Collection[str]) -> None:
        """This worker no longer runs these tasks (their agent went to another worker):
        drop what it held for them. The held mail was never acknowledged, so the
        agent's new owner delivers it again; kept here, it would be merged into the
        task after all if this worker took the agent back, while the other worker had
        answered it on its own (the person got two answers)."""
        for task_id in task_ids:
            self._merged.pop(task_id, None)
            self._queued.pop(task_id, None)

    def settled(self, record: TaskRecord) -> tuple[list[Delivery], list[TaskRecord]]:
        """A task ended: the messages it never took (to answer on their own) and the
        tasks queued after it (to start now)."""
        leftover = list(self._merged.pop(record.id, {}).values())
        return leftover, self._queued.pop(record.id, [])
