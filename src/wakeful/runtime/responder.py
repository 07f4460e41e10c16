"""The responder: agents answer people, each in a task of its own.

A person's mail to an agent, or a person's post in a channel the agent belongs to,
starts a task on that agent whose instruction carries the message. When the task
ends, its final answer goes back by itself: a reply in the person's 1-1 thread, or a
post by the agent in the channel. Several agents in one channel therefore answer
concurrently, each in its own loop; and nothing a model must remember to do (call a
reply tool) stands between a person and an answer.

Contract for live views (the web UI): when an answer starts, an ``mail.answering``
event names the mail and the task (``{"mail_id", "task_id", "agent", "channel" |
"person"}``); that task's ``model.token`` events stream the answer; the answer mail's
payload is ``{"task_id", "in_reply_to"}``, plus ``"truncated": true`` when the model's
final answer was cut off by its output-token limit (the body then says so too).

In a channel, a post that names agents with ``@name`` is answered by those agents only;
the others keep it in their inbox, unanswered. A post that names no agent is answered
by every agent in the channel.

Only mail from people is answered. Mail between agents is for their tasks to read with
the mail tools; answering it automatically would let two agents talk in circles.

Durability: the mail is acknowledged only after its task is committed, and a task
already started for a mail is found again (by its cause) rather than started twice;
the answer is sent when the task settles, also after a restart, with an idempotency
key so that it is sent once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from wakeful.core.mail import AddressKind, parse_address
from wakeful.core.mail_records import PENDING, Delivery, Envelope
from wakeful.core.records import Event, TaskRecord
from wakeful.core.scope import TaskScope
from wakeful.core.states import AgentState, TaskState
from wakeful.errors import ConflictError
from wakeful.runtime.new_messages import NewMessages

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime

log = structlog.get_logger("wakeful.responder")

PERSON = "person:"
_ANSWER_LIMIT = 60_000
TRUNCATED_NOTE = "\n\n(cut off: the model reached its output-token limit, max_output_tokens)"


_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_.-]*)")


def mentioned(body: str, agents: Container[str]) -> set[str]:
    """The agents a post names with ``@name`` (names that are not agents do not count)."""
    found = (name.rstrip(".-") for name in _MENTION.findall(body))
    return {name for name in found if name in agents}


def instruction_for(mail: Envelope, channel: str | None) -> str:
    """What the answering task is asked: the person's own words, as they wrote them.

    Who wrote and how the answer travels go in the system prompt (see
    :func:`answering_note`): framing the words themselves ("X wrote ... Answer them")
    sent small models off topic, answering the frame instead of the person.
    """
    if mail.subject and mail.subject.strip() not in mail.body:
        return f"{mail.subject}\n\n{mail.body}"
    return mail.body


def answers_a_person(record: TaskRecord) -> bool:
    """Was this task started to answer a person's mail?"""
    return record.created_by.startswith(PERSON) and bool(record.cause_id)


def answering_note(record: TaskRecord) -> str | None:
    """The system prompt's note for a task that answers a person (else None): who wrote
    the user message, and that the final reply goes back to them by itself."""
    if not answers_a_person(record):
        return None
    return (f"The user message is mail from {record.created_by}, a person. Answer it "
            "directly in your final reply: that reply is sent back to them as your answer "
            "(you need no tool to send it).")


@dataclass(frozen=True, slots=True)
class _Fresh:
    """A message merged into a task that ended before taking it: a task of its own."""

    delivery: Delivery


class Responder:
    """A service: turns people's mail to agents into tasks, and their results into mail."""

    name = "responder"

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._scope = TaskScope("responder")
        self._queue: asyncio.Queue[Delivery | TaskRecord | _Fresh] = asyncio.Queue()
        self._answering: dict[str, tuple[Envelope, str | None]] = {}  # task -> mail, channel
        self._working = False
        self._truncated: set[str] = set()  # tasks whose final answer was cut off
        self._new_messages: NewMessages | None = None

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "the responder is not started"
        return self._runtime

    @property
    def new_messages(self) -> NewMessages:
        """What happens to a person's new message while a task answers them."""
        if self._new_messages is None:
            self._new_messages = NewMessages(self.runtime)
        return self._new_messages

    def spawn_note(self, agent: str, mail: Envelope, body: str,
                   payload: dict[str, Any]) -> None:
        """Reply with a short note (in the background: it must not hold up the answer)."""
        self._scope.spawn(self.runtime.mailbox.reply(
            agent, mail, body, payload=payload, idempotency_key=f"note:{mail.id}"),
            name=f"responder:note:{mail.id}")

    def attach(self, runtime: Runtime) -> None:
        """Listen before the mailbox opens, so that people's mail that waited while
        nothing ran is answered too; answers start once :meth:`begin` is called."""
        self._runtime = runtime
        runtime.mailbox.on_arrival(self._arrived)
        runtime.on_settle(self._settled)
        runtime.events.add_listener(self._observe)

    def _observe(self, event: Event) -> None:
        """Remember answers cut off by max_tokens (the task loop marks the final
        ``task.state`` event ``truncated``), to say so in the answer."""
        if (event.type == "task.state" and event.task_id and event.data.get("truncated")
                and event.data.get("to") == TaskState.DONE.value):
            self._truncated.add(event.task_id)

    async def start(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def begin(self) -> None:
        """Start answering (the runtime calls this once its agents run)."""
        self._scope.spawn(self._work(), name="responder:work")

    async def stop(self) -> None:
        await self._scope.aclose()

    def _wanted(self, delivery: Delivery) -> bool:
        runtime = self.runtime
        owner = parse_address(delivery.owner)
        agent = runtime.agents.get(owner.name)
        return (agent is not None and agent.definition.answer_mail
                and agent.state is not AgentState.STOPPED
                and runtime.owns_agent(owner.name))  # else its owner answers

    def _answers_post(self, agent: str, delivery: Delivery) -> bool:
        """A post that @mentions agents is for them alone; one that names nobody goes by
        the channel's ``answer`` rule in wakeful.yaml (everyone, or one named agent)."""
        name = parse_address(agent).name
        named = mentioned(delivery.mail.body, self.runtime.agents)
        if named:
            return name in named
        rule = next((c.answer for c in self.runtime.mailbox.config.channels
                     if c.name == delivery.channel), "everyone")
        return rule in ("everyone", name)

    def _arrived(self, delivery: Delivery) -> None:
        if (delivery.mail.sender.startswith(PERSON) and delivery.status == PENDING
                and parse_address(delivery.owner).kind is AddressKind.AGENT):
            self._queue.put_nowait(delivery)

    async def adopt(self, agents: Collection[str]) -> None:
        """This worker took ``agents``: send the answers their previous worker owed
        (it stopped after an answering task ended and before its answer was stored)."""
        for record in await self.runtime.store.unanswered(agents):
            self._queue.put_nowait(record)

    def forget(self, task_ids: Collection[str]) -> None:
        """Another worker runs these tasks now: forget which mail they answer and what
        waited to be merged into them (see :meth:`NewMessages.forget`)."""
        for task_id in task_ids:
            self._answering.pop(task_id, None)
        self.new_messages.forget(task_ids)

    def _settled(self, record: TaskRecord) -> None:
        if record.id in self._answering or answers_a_person(record):
            self._queue.put_nowait(record)
        leftover, queued = self.new_messages.settled(record)
        for delivery in leftover:  # merged too late: answered on its own
            self._queue.put_nowait(_Fresh(delivery))
        for waiting in queued:
            self.runtime.agent(waiting.agent).submit(waiting)

    def busy(self) -> bool:
        """Mail to answer, or an answer to send: the runtime is not idle."""
        return self._working or not self._queue.empty()

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            self._working = True
            try:
                if isinstance(item, _Fresh):
                    await self._start_answer(item.delivery, fresh=True)
                elif isinstance(item, Delivery):
                    await self._start_answer(item)
                else:
                    await self._send_answer(item)
            except Exception as exc:  # one bad mail must not stop the answers to others
                log.error("responder failed", item=repr(item)[:200], error=repr(exc))
                if isinstance(item, Delivery | _Fresh):
                    held = item.delivery if isinstance(item, _Fresh) else item
                    self.runtime.mailbox.nack(held, f"{type(exc).__name__}: {exc}")
            finally:
                self._working = False
                self.runtime.changed()

    async def _start_answer(self, delivery: Delivery, fresh: bool = False) -> None:
        """Start (or find) the task answering ``delivery``; while a task still answers
        the same person, the agent's ``on_new_message`` decides (see
        :mod:`wakeful.runtime.new_messages`); ``fresh``: a task of its own regardless."""
        runtime, mailbox = self.runtime, self.runtime.mailbox
        agent = delivery.owner
        if not fresh and self.new_messages.merging(delivery.mail.id):
            return  # delivered again while it waits to be merged
        if delivery.status != PENDING or not self._wanted(delivery):
            return  # taken already (by one of the agent's tasks), or not to be answered
        if delivery.channel and not self._answers_post(agent, delivery):
            return
        await mailbox.read(agent, delivery.mail.id)  # takes this very mail: a lease
        mail, channel = delivery.mail, delivery.channel
        started = await runtime.store.tasks_caused_by(mail.id, agent)
        running = None if started or channel or fresh else \
            self.new_messages.running_answer(agent, mail.sender, self._answering)
        policy = runtime.agent(agent).definition.on_new_message
        if running is not None and policy == "merge":
            self.new_messages.merge(running, delivery)  # acked when the task takes it
            return
        if running is not None and policy == "reject":
            await self.new_messages.reject(agent, running, delivery)
            await mailbox.ack_id(agent, mail.id)
            return
        if running is not None and policy == "interrupt":
            await self.new_messages.interrupt(running, delivery)
        if not started:
            try:
                record = await runtime.create_task(
                    agent, instruction_for(mail, channel), created_by=mail.sender,
                    cause_id=mail.id, trace_id=mail.correlation_id,
                    submit=running is None or policy != "queue")
            except ConflictError:  # another worker started it first (one per mail)
                started = await runtime.store.tasks_caused_by(mail.id, agent)
                if not started:
                    raise
            else:
                if running is not None and policy == "queue":
                    self.new_messages.queue_after(running, record, delivery)
        if started:
            record = started[0]
        self._answering[record.id] = (mail, channel)
        runtime.events.emit("mail.answering", agent=agent, task_id=record.id,
                            correlation_id=record.trace_id, causation_id=mail.id, data={
                                "mail_id": mail.id, "task_id": record.id, "agent": agent,
                                **({"channel": channel} if channel else
                                   {"person": mail.sender})})
        await mailbox.ack_id(agent, mail.id)
        if record.state.ended:
            await self._send_answer(record)

    async def _send_answer(self, record: TaskRecord) -> None:
        mailbox = self.runtime.mailbox
        found = self._answering.pop(record.id, None)
        if found is None:
            if not record.cause_id:
                return
            try:
                stored = await mailbox.store.get_mail(record.cause_id)
            except Exception:
                return
            if stored is None or not stored.sender.startswith(PERSON):
                return
            channel = stored.recipient[1:] if stored.recipient.startswith("#") else None
            found = (stored, channel)
        mail, channel = found
        payload: dict[str, Any] = {"task_id": record.id, "in_reply_to": mail.id}
        if record.state is TaskState.DONE:
            body = record.result or "(no answer)"
            if record.id in self._truncated:
                self._truncated.discard(record.id)
                body = body[:_ANSWER_LIMIT - len(TRUNCATED_NOTE)] + TRUNCATED_NOTE
                payload["truncated"] = True
        elif record.state is TaskState.CANCELLED and record.id in self.new_messages.interrupted:
            self.new_messages.interrupted.discard(record.id)
            body = "I stopped this answer to answer your newer message."
        elif record.state is TaskState.CANCELLED:
            body = "I stopped before answering: the task was cancelled."
        else:
            body = f"I could not answer: {record.error or 'the task failed'}"
        key = f"answer:{record.id}"
        if channel:
            await mailbox.post(record.agent, channel, body[:_ANSWER_LIMIT], payload=payload,
                               thread_id=mail.thread_id, in_reply_to=mail.id,
                               correlation_id=mail.correlation_id, causation_id=mail.id,
                               idempotency_key=key)
        else:
            await mailbox.reply(record.agent, mail, body[:_ANSWER_LIMIT], payload=payload,
                                idempotency_key=key)
