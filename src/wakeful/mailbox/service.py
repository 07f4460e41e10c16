"""The mailbox: the only way agents, tasks and people talk to each other.

Guarantees, and how they are kept:

* **A sent mail is stored.** :meth:`Mailbox.send` returns only after the mail is
  committed (group-committed with other writes; see :mod:`wakeful.mailbox.committer`).
* **At-least-once delivery with explicit ack.** A reader that takes a mail holds a
  lease on it for ``visibility_timeout_s``; without an :meth:`~Mailbox.ack` by then (its
  handler crashed, or the process died) the mail is delivered again. After
  ``max_deliveries`` deliveries it goes to the dead-letter box, where a person can read
  it and :meth:`~Mailbox.retry` it.
* **Exactly once in effect**, with two things from the handler's side: send with an
  ``idempotency_key`` (a repeated send is dropped and returns the first mail), and make
  the effect of handling a mail idempotent on the mail id before acknowledging it.
* **Order.** Mail from one sender to one mailbox is delivered in the order it was
  sent; a mail delivered again keeps its place.
* **Wake on mail.** Open deliveries live in memory (:mod:`wakeful.mailbox.boxes`); a
  reader waiting for mail that matches a filter is handed it the moment it commits.
  The store is read only at start and, every ``poll_interval_s``, for mail that *other
  processes* (``wakeful mail send``) wrote.
* **Access.** A reader sees its own mailbox and the channels it belongs to; a task
  also sees its own task mailbox, but not its sibling tasks'. Anything else is refused
  and recorded as a ``mail.access_denied`` event.

The same class runs "remote" (``live=False``) in the CLI: it writes mail for a running
runtime to pick up and answers queries, but delivers nothing itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import structlog
from pydantic import ValidationError

from wakeful.core.mail import (
    PRIORITIES,
    Address,
    AddressKind,
    Mail,
    MailDraft,
    MailFilter,
    agent_of,
    is_from,
    parse_address,
    parse_member,
)
from wakeful.core.mail_records import (
    ACKED,
    DEAD,
    DELIVERED,
    PENDING,
    Change,
    Channel,
    ChannelUpsert,
    CursorMove,
    Delegation,
    DelegationChange,
    Delivery,
    DeliveryState,
    Envelope,
    MemberChange,
    NewMail,
)
from wakeful.core.records import TaskRecord
from wakeful.core.states import TaskState
from wakeful.errors import (
    ConflictError,
    MailAccessError,
    MailError,
    MailTimeoutError,
    MailTooLargeError,
    UnknownAgentError,
)
from wakeful.ids import _b32
from wakeful.mailbox.boxes import Box, Key, LeaseClock, Waiter
from wakeful.mailbox.committer import BatchCommitter, Committer, DirectCommitter
from wakeful.observe.events import EventLog
from wakeful.project.definitions import NAME_PATTERN, MailboxConfig
from wakeful.runtime.scope import TaskScope
from wakeful.store.mail import MailStore, MemoryMailStore

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime

log = structlog.get_logger("wakeful.mailbox")
OPERATOR = None  # the reader the CLI acts as: sees everything
_FINAL = (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED)


class _Ids:
    """Time-sortable ids, cheaper than :func:`wakeful.ids.new_id` on the hot path:
    the time part is encoded once per millisecond, then a counter."""

    def __init__(self) -> None:
        self._node = _b32(int.from_bytes(os.urandom(3), "big"), 4)
        self._ms = -1
        self._prefix = ""
        self._n = itertools.count()

    def __call__(self, kind: str = "m") -> str:
        ms = time.time_ns() // 1_000_000
        if ms != self._ms:
            self._ms = ms
            self._prefix = _b32(ms, 9) + self._node
        return f"{kind}_{self._prefix}{next(self._n) & 0xFFFFFF:06x}"


@dataclass(frozen=True, slots=True)
class Sent:
    mail: Envelope
    duplicate: bool  # an earlier send with the same idempotency key was kept instead
    delivered_to: int  # how many mailboxes got it

    @property
    def id(self) -> str:
        return self.mail.id


def _owners_of(reader: str) -> tuple[str, ...]:
    address = parse_address(reader)
    if address.kind is AddressKind.TASK:
        return (reader, address.name)
    if address.kind in (AddressKind.AGENT, AddressKind.PERSON):
        return (reader,)
    raise MailError(f"{reader!r} cannot read mail: readers are agents, tasks and people")


def _describe(error: ValidationError, sender: str) -> str:
    problems = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(mail)"
        msg = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"field {loc!r}: {msg}")
    return f"malformed mail from {sender!r}: " + "; ".join(problems)


class Mailbox:
    """Durable asynchronous mail between agents, tasks and people (a runtime service)."""

    name = "mailbox"

    def __init__(
        self,
        store: MailStore,
        config: MailboxConfig | None = None,
        *,
        events: EventLog | None = None,
        agents: Callable[[], Collection[str]] | None = None,
        live: bool = True,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.store = store
        self.config = config or MailboxConfig()
        self.events = events or EventLog()
        self.live = live
        self.poll_interval_s = poll_interval_s
        self._agents = agents
        self._runtime: Runtime | None = None
        self._ids = _Ids()
        self._boxes: dict[str, Box] = {}
        self._open: dict[Key, Delivery] = {}
        self._channels: dict[str, Channel] = {}
        self._delegations: dict[str, Delegation] = {}
        self._settled: set[str] = set()
        self._listeners: list[Callable[[Delivery], None]] = []
        self._order = itertools.count(1)
        self._leases = LeaseClock(self._lease_expired)
        self._scope = TaskScope("mailbox")
        self._direct = store if isinstance(store, MemoryMailStore) else None
        self._committer: Committer = (
            DirectCommitter(self._direct, self._after_commit) if self._direct is not None
            else BatchCommitter(store, self._after_commit))
        self._opened = False
        self._closed = False
        self._durable = store.durable
        self._senders: dict[str, Address] = {}  # senders known to be valid
        self._owners: dict[str, tuple[str, ...]] = {}  # reader -> the mailboxes it reads
        self._agents_seen: set[str] = set()  # recipients known to be agents
        self._visibility = self.config.visibility_timeout_s
        self.denied = 0  # access refusals so far
        # The agents whose mail this process delivers: those its worker owns (None: all,
        # outside a runtime). Mail to the others is left in the store for their owner.
        self._owned: set[str] | None = None
        self._resumed = 0  # deliveries held by resumed tasks, handed back to them first

    # lifecycle -------------------------------------------------------------
    async def start(self, runtime: Runtime) -> None:
        """As a runtime service: deliver to the runtime's agents, report delegations."""
        self._runtime = runtime
        self.events = runtime.events
        self._agents = runtime.agent_names
        self.poll_interval_s = runtime.poll_interval_s
        self._owned = set()  # agents are adopted as the worker takes their leases
        runtime.on_settle(self._on_settle)
        await self.open()

    async def stop(self) -> None:
        await self.close()

    async def open(self) -> None:
        if self._opened or self._closed:
            raise MailError("the mailbox is already open (or closed: open a new one)")
        self._opened = True
        self._committer.start(self._scope)
        self._channels = await self.store.load_channels()
        await self._ensure_config_channels()
        if not self.live:
            return
        watermark, _ = await self.store.take_wakeups(0)  # all of it is loaded below
        await self._load_open()
        if self.store.durable:
            self._scope.spawn(self._watch(watermark), name="mailbox:watch-store")
        for delegation in await self.store.load_delegations():
            self._delegations[delegation.task_id] = delegation
        if self._runtime is not None and self._delegations:
            self._scope.spawn(self._report_finished(list(self._delegations.values())),
                              name="mailbox:report-delegations")

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        self._closed = True
        self._leases.close()
        for box in self._boxes.values():
            for waiter in list(box.waiters):
                waiter.future.cancel()
            box.waiters.clear()
        await self._committer.flush()
        await self._scope.aclose()

    async def flush(self) -> None:
        """Wait until every change made so far is committed."""
        if self._opened:
            await self._committer.barrier()

    async def _load_open(self) -> None:
        self._take_in(await self.store.load_open(), frozenset())

    def _mine(self, owner: str) -> bool:
        """Does this process deliver the mail of mailbox ``owner``?"""
        owned = self._owned
        return owned is None or owner.startswith("person:") or owner.split("/", 1)[0] in owned

    def _take_in(self, deliveries: list[Delivery], resuming: Collection[str]) -> None:
        """Make stored open deliveries this process's to deliver. One held by a task in
        ``resuming`` stays that task's (it gets it back first); one held by a reader
        that is gone counts as a failed delivery and is delivered again."""
        now = time.time()
        highest = next(self._order)
        for delivery in deliveries:
            highest = max(highest, delivery.order)
            if delivery.key in self._open or not self._mine(delivery.owner):
                continue
            if delivery.status == DELIVERED and delivery.owner.startswith("person:"):
                self._open[delivery.key] = delivery  # people keep mail until they read it
                self._box(delivery.owner).leased[delivery] = None
                continue
            if delivery.status == DELIVERED:
                holder = (delivery.holder or "").partition("/")[2]
                if holder and holder in resuming:
                    self._open[delivery.key] = delivery
                    self._box(delivery.owner).leased[delivery] = None
                    delivery.lease_until = until = now + self._visibility
                    self._leases.add(until, delivery, len(self._open))
                    delivery.resumed = True
                    self._resumed += 1
                    continue
                delivery.lease_until = None
                delivery.holder = None
                if delivery.attempts >= self.config.max_deliveries:
                    self._bury(delivery, "not acknowledged before its reader stopped, "
                               f"after {delivery.attempts} deliveries", now)
                    continue
                delivery.status = PENDING
                self._save(delivery)
            self._arrive(delivery)
        self._order = itertools.count(highest + 1)

    async def adopt(self, agents: Collection[str]) -> None:
        """This worker now runs ``agents``: deliver their mail from the store, giving the
        tasks that will resume the mail they held when their last worker stopped."""
        if self._owned is None:
            return
        self._owned.update(agents)
        if not self.live or not self._opened:
            return
        runtime = self._runtime
        resuming: set[str] = set()
        if runtime is not None:
            resuming = {t.id for t in await runtime.store.list_tasks(
                states=[TaskState.QUEUED, TaskState.RUNNING, TaskState.WAITING])
                if t.agent in agents}
        wanted = set(agents)
        if len(wanted) == 1:
            deliveries = await self.store.load_open(next(iter(wanted)))
        else:  # one read for them all
            deliveries = [d for d in await self.store.load_open()
                          if d.owner.split("/", 1)[0] in wanted]
        self._take_in(deliveries, resuming)

    def forget(self, agent: str) -> None:
        """Another worker runs ``agent`` now: drop its mail from memory (the store keeps
        it; its new owner delivers it)."""
        if self._owned is None:
            return
        self._owned.discard(agent)
        for owner in [o for o in self._boxes if o.split("/", 1)[0] == agent]:
            box = self._boxes.pop(owner)
            for delivery in (*box.visible, *box.leased):
                self._open.pop(delivery.key, None)
                if delivery.resumed:
                    delivery.resumed = False
                    self._resumed -= 1
            for waiter in box.waiters:
                if not waiter.future.done():
                    waiter.future.cancel()

    def ack_with_step(self, delivery: Delivery) -> DeliveryState | None:
        """Acknowledge in memory now; return the change to commit with the caller's own
        write (a tool call's result), or None if there is nothing to commit."""
        if not self._settle_ack(delivery) or not self._durable:
            return None
        return DeliveryState(delivery.state_row(), not self.live)

    async def commit_changes(self, changes: Sequence[Change]) -> None:
        if changes:
            await self._committer.commit_all(list(changes))

    async def _ensure_config_channels(self) -> None:
        """Create the channels wakeful.yaml lists, and add members it lists since.
        Members that are not (or no longer) agents are left out, not fatal: the project
        loader already reported them."""
        known = self._known_agents()
        for spec in self.config.channels:
            members = [m for m in spec.members
                       if known is None or m.startswith("person:") or m in known]
            if spec.name not in self._channels:
                await self.create_channel(spec.name, members, topic=spec.topic,
                                          created_by="config")
            else:
                missing = [m for m in members if m not in self._channels[spec.name].members]
                if missing:
                    await self.add_members(spec.name, missing)

    async def _watch(self, watermark: int) -> None:
        """Pick up what other processes wrote (``wakeful mail send``, ``... retry``)."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                watermark, wakeups = await self.store.take_wakeups(watermark)
                if not wakeups:
                    continue
                if any(kind == "channels" for kind, _, _ in wakeups):
                    self._channels = await self.store.load_channels()
                keys = [(m, o) for kind, m, o in wakeups
                        if kind == "delivery" and m is not None and o is not None]
                for delivery in await self.store.load_deliveries(keys):
                    if (delivery.key not in self._open and delivery.status == PENDING
                            and self._mine(delivery.owner)):
                        delivery.order = next(self._order)
                        self._arrive(delivery)
                        self._publish_sent(delivery.mail, 1)
            except Exception as exc:  # keep watching; the next round may succeed
                log.error("mailbox: reading other processes' mail failed", error=repr(exc))

    # directory and validation ---------------------------------------------
    def _known_agents(self) -> Collection[str] | None:
        return self._agents() if self._agents is not None else None

    def _check_agent(self, name: str) -> None:
        known = self._known_agents()
        if known is not None and name not in known:
            raise UnknownAgentError(name, list(known))

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
                                   and not all(self._mine(o) for o in owners))
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
                for delivery in change.deliveries:
                    self._arrive(delivery)

    # delivery --------------------------------------------------------------
    def _box(self, owner: str) -> Box:
        box = self._boxes.get(owner)
        if box is None:
            box = self._boxes[owner] = Box()
        return box

    def _arrive(self, delivery: Delivery) -> None:
        """A delivery became visible: hand it to a waiting reader, or keep it."""
        if self._owned is not None and not self._mine(delivery.owner):
            self._open.pop(delivery.key, None)  # its agent's worker delivers it
            return
        self._open[delivery.key] = delivery
        box = self._boxes.get(delivery.owner) or self._box(delivery.owner)
        for waiter in box.waiters:
            if waiter.filter is None or waiter.filter.matches(delivery.mail):
                if len(waiter.owners) == 1:
                    del box.waiters[waiter]
                else:
                    self._unregister(waiter)
                self._lease(delivery, box, waiter.reader)
                waiter.future.set_result(delivery)
                break
        else:
            visible = box.visible
            if visible and delivery.order < next(reversed(visible)).order:
                box.unsorted = True
            visible[delivery] = None
        for listener in self._listeners:
            listener(delivery)

    def on_arrival(self, listener: Callable[[Delivery], None]) -> None:
        """Call ``listener`` for every delivery that becomes visible (after a waiting
        reader had its chance): the hook for waking agents that sleep until mail."""
        self._listeners.append(listener)

    def _lease(self, delivery: Delivery, box: Box, reader: str) -> None:
        now = time.time()
        delivery.status = DELIVERED
        delivery.attempts += 1
        delivery.delivered_at = now
        delivery.holder = reader
        box.leased[delivery] = None
        if delivery.owner.startswith("person:"):
            delivery.lease_until = None  # people keep mail until they read it
        else:
            delivery.lease_until = until = now + self._visibility
            self._leases.add(until, delivery, len(self._open))
        if self._durable:
            self._save(delivery)
        if self.events.listened:
            self._live_event("mail.delivered", delivery, reader)

    def _save(self, delivery: Delivery) -> None:
        """Write a delivery's new state soon (the in-memory store holds it already)."""
        if self._durable:
            self._committer.submit(DeliveryState(delivery.state_row(), not self.live))

    def _live_event(self, kind: str, delivery: Delivery, reader: str | None) -> None:
        """Delivery and ack are recorded in the delivery itself (delivered_at,
        attempts, acked_at), so their events go to live subscribers only."""
        who = parse_address(reader or delivery.owner)
        self.events.emit(kind, agent=who.agent, task_id=who.task_id, persist=False,
                         correlation_id=delivery.mail.correlation_id,
                         data={"mail_id": delivery.mail.id, "owner": delivery.owner,
                               "attempts": delivery.attempts})

    def _lease_expired(self, delivery: Delivery) -> None:
        if self._open.get(delivery.key) is not delivery:
            return  # forgotten: another worker delivers it now
        self._give_back(delivery, f"not acknowledged within {self.config.visibility_timeout_s:g}"
                        f"s of delivery {delivery.attempts}")

    def _give_back(self, delivery: Delivery, error: str) -> None:
        """A delivery failed: deliver it again, or bury it after max_deliveries."""
        box = self._box(delivery.owner)
        box.leased.pop(delivery, None)
        delivery.lease_until = None
        delivery.holder = None
        delivery.last_error = error
        if delivery.resumed:
            delivery.resumed = False
            self._resumed -= 1
        if delivery.attempts >= self.config.max_deliveries:
            self._bury(delivery, error + f"; gave up after {delivery.attempts} deliveries",
                       time.time())
            return
        delivery.status = PENDING
        self._save(delivery)
        self._arrive(delivery)

    def _bury(self, delivery: Delivery, reason: str, now: float) -> None:
        self._open.pop(delivery.key, None)
        box = self._boxes.get(delivery.owner)
        if box is not None:
            box.visible.pop(delivery, None)
            box.leased.pop(delivery, None)
        delivery.status = DEAD
        delivery.lease_until = None
        delivery.last_error = reason
        self._save(delivery)
        owner = parse_address(delivery.owner)
        self.events.emit("mail.dead_lettered", agent=owner.agent, task_id=owner.task_id,
                         correlation_id=delivery.mail.correlation_id,
                         data={"mail_id": delivery.mail.id, "owner": delivery.owner,
                               "attempts": delivery.attempts, "reason": reason,
                               "from": delivery.mail.sender,
                               "subject": delivery.mail.subject[:200]})

    # reading ---------------------------------------------------------------
    def claim(self, reader: str, filter: MailFilter | None = None, limit: int = 10
              ) -> list[Delivery]:
        """Take up to ``limit`` visible mails for ``reader`` (oldest first), leasing
        them: ack each one once handled, or it is delivered again."""
        owners = self._owners.get(reader) or self._owners_for(reader)
        if self._resumed:
            again = self._held_for_resumed(reader, owners, filter, limit)
            if again:
                return again
        if len(owners) == 1:
            box = self._boxes.get(owners[0])
            if box is None or not box.visible:
                return []
        found: list[tuple[Delivery, Box]] = []
        for owner in owners:
            box = self._boxes.get(owner)
            if box is None or not box.visible:
                continue
            for delivery in box.in_order():
                if filter is None or filter.matches(delivery.mail):
                    found.append((delivery, box))
                    if len(found) >= limit and len(owners) == 1:
                        break
        if len(owners) > 1:
            found.sort(key=lambda pair: pair[0].order)
            del found[limit:]
        for delivery, box in found:
            del box.visible[delivery]
            self._lease(delivery, box, reader)
        return [delivery for delivery, _ in found]

    def _held_for_resumed(self, reader: str, owners: tuple[str, ...],
                          filter: MailFilter | None, limit: int) -> list[Delivery]:
        """Mail a task held when its worker stopped: the resumed task redoes the call
        that took it and gets the same mail back (never a second reader)."""
        found = [d for owner in owners if (box := self._boxes.get(owner))
                 for d in box.leased if d.resumed and d.holder == reader
                 and (filter is None or filter.matches(d.mail))]
        found.sort(key=lambda d: d.order)
        for delivery in found[:limit]:
            delivery.resumed = False
            self._resumed -= 1
        return found[:limit]

    def _owners_for(self, reader: str) -> tuple[str, ...]:
        owners = self._owners[reader] = _owners_of(reader)
        if len(self._owners) > 100_000:  # tasks come and go: do not grow without end
            self._owners.clear()
            self._owners[reader] = owners
        return owners

    def held(self, reader: str) -> list[Delivery]:
        """Mail ``reader`` took and has not acknowledged yet."""
        held = [d for owner in _owners_of(reader) if (box := self._boxes.get(owner))
                for d in box.leased if d.holder == reader]
        return sorted(held, key=lambda d: d.order)

    def pending(self, reader: str, filter: MailFilter | None = None) -> int:
        """How many visible mails ``reader`` could take now."""
        return sum(1 for owner in _owners_of(reader) if (box := self._boxes.get(owner))
                   for d in box.visible if filter is None or filter.matches(d.mail))

    async def receive(self, reader: str, filter: MailFilter | None = None,
                      timeout: float | None = None) -> Delivery:
        """Wait for the next mail for ``reader`` that matches ``filter`` and take it.

        Wakes as soon as such mail is committed (no polling). Raises MailTimeoutError
        after ``timeout`` seconds. A mail handed over as the wait is cancelled is given
        back, not lost.
        """
        taken = self.claim(reader, filter, 1)
        if taken:
            return taken[0]
        if not self._opened or not self.live:
            raise MailError("the mailbox is not delivering (not open, or remote)")
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        waiter = Waiter(reader, self._owners[reader], filter, future)
        for owner in waiter.owners:
            self._box(owner).waiters[waiter] = None
        try:
            if timeout is None:
                return await future
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            self._abandon(waiter)
            wanted = f" {filter.describe()}" if filter is not None else ""
            raise MailTimeoutError(f"no mail{wanted} for {reader!r} within {timeout:g}s"
                                   ) from None
        except BaseException:
            self._abandon(waiter)
            raise

    def _unregister(self, waiter: Waiter) -> None:
        for owner in waiter.owners:
            box = self._boxes.get(owner)
            if box is not None:
                box.waiters.pop(waiter, None)

    def _abandon(self, waiter: Waiter) -> None:
        self._unregister(waiter)
        future = waiter.future
        if future.done() and not future.cancelled():
            self.release(future.result())  # handed over just as the wait ended

    def release(self, delivery: Delivery) -> None:
        """Give a taken mail back unread; it does not count as a failed delivery."""
        if delivery.status != DELIVERED:
            return
        delivery.attempts -= 1
        box = self._box(delivery.owner)
        box.leased.pop(delivery, None)
        delivery.status = PENDING
        delivery.lease_until = None
        delivery.holder = None
        self._save(delivery)
        self._arrive(delivery)

    def nack(self, delivery: Delivery, error: str) -> None:
        """Handling failed: deliver it again (or dead-letter it after max_deliveries)."""
        if delivery.status == DELIVERED:
            self._give_back(delivery, error[:2000])

    async def ack(self, delivery: Delivery) -> bool:
        """Mark a mail handled: it is never delivered to this mailbox again.

        Returns False when it was already acknowledged. Committed when this returns.
        """
        if not self._settle_ack(delivery):
            return False
        if self._durable:
            await self._committer.commit(DeliveryState(delivery.state_row(), not self.live))
        return True

    def _settle_ack(self, delivery: Delivery) -> bool:
        """The in-memory half of an ack; False if it was acknowledged already."""
        if delivery.status == ACKED:
            return False
        if delivery.status == DEAD:
            raise MailError(f"mail {delivery.mail.id} is in the dead-letter box of "
                            f"{delivery.owner!r}; retry it before acknowledging it")
        box = self._boxes.get(delivery.owner)
        if box is not None:
            box.leased.pop(delivery, None) or box.visible.pop(delivery, None)
        self._open.pop(delivery.key, None)
        if delivery.resumed:
            delivery.resumed = False
            self._resumed -= 1
        now = time.time()
        delivery.status = ACKED
        delivery.acked_at = now
        delivery.lease_until = None
        if delivery.read_at is None and delivery.owner.startswith("person:"):
            delivery.read_at = now
        if delivery.channel is not None:
            self._committer.submit(CursorMove(delivery.channel, agent_of(delivery.owner)
                                              or delivery.owner, delivery.mail.id))
        if self.events.listened:
            self._live_event("mail.acked", delivery, delivery.holder)
        return True

    async def ack_many(self, deliveries: Iterable[Delivery]) -> int:
        """Acknowledge several mails in one commit; returns how many were still open."""
        changed = [d for d in deliveries if self._settle_ack(d)]
        if self._durable:
            await self._committer.commit_all(
                [DeliveryState(d.state_row(), not self.live) for d in changed])
        return len(changed)

    def _find_open(self, reader: str, mail_id: str) -> Delivery | None:
        for owner in _owners_of(reader):
            delivery = self._open.get((mail_id, owner))
            if delivery is not None:
                return delivery
        return None

    async def ack_id(self, reader: str, mail_id: str) -> bool:
        """Acknowledge mail ``mail_id`` in ``reader``'s mailbox."""
        delivery = self._find_open(reader, mail_id)
        if delivery is None:
            await self._check_read_access(reader, mail_id)
            return False  # readable but not open for this reader: already handled
        return await self.ack(delivery)

    async def read(self, reader: str | None, mail_id: str) -> Mail:
        """Read one mail, marking it read (and, for a person, handled).

        ``reader`` None is the operator (the CLI), who may read anything.
        """
        if reader is not None:
            delivery = self._find_open(reader, mail_id)
            if delivery is not None:
                return await self._read_open(reader, delivery)
        mail, delivery = await self._check_read_access(reader, mail_id)
        return mail.view(delivery, None if delivery else await self._summary(mail.id))

    async def _read_open(self, reader: str, delivery: Delivery) -> Mail:
        box = self._box(delivery.owner)
        if delivery.status == PENDING:
            box.visible.pop(delivery, None)
            self._lease(delivery, box, reader)
        if delivery.read_at is None:
            delivery.read_at = time.time()
            self._save(delivery)
            if delivery.channel is not None:
                self._committer.submit(CursorMove(delivery.channel, agent_of(delivery.owner)
                                                  or delivery.owner, delivery.mail.id))
        view = delivery.mail.view(delivery)
        if delivery.owner.startswith("person:"):
            await self.ack(delivery)
        return view

    async def _check_read_access(self, reader: str | None, mail_id: str
                                 ) -> tuple[Envelope, Delivery | None]:
        await self.flush()
        mail = await self.store.get_mail(mail_id)
        if mail is None:
            raise MailError(f"no mail with id {mail_id!r}")
        if reader is None:
            return mail, None
        allowed, mine = await self._access(reader, mail)
        if not allowed:
            self._deny(reader, f"read mail {mail_id}",
                       f"it was sent by {mail.sender!r} to {mail.recipient!r}")
        return mail, mine

    async def _access(self, reader: str, mail: Envelope) -> tuple[bool, Delivery | None]:
        """May ``reader`` see ``mail``? Yes if it reached one of the reader's mailboxes
        (an agent's, or a task's own), if the reader's agent (or the person) sent it,
        or if it was posted to a channel the reader belongs to."""
        owners = _owners_of(reader)
        mine = next((d for d in await self.store.deliveries_of(mail.id) if d.owner in owners),
                    None)
        if mine is not None:
            return True, mine
        identity = parse_address(reader).agent or reader
        if is_from(mail.sender, identity):
            return True, None
        if mail.recipient.startswith("#"):
            channel = self._channels.get(mail.recipient[1:])
            if channel is not None and identity in channel.members:
                return True, None
        return False, None

    async def _summary(self, mail_id: str) -> str | None:
        statuses = {d.status for d in await self.store.deliveries_of(mail_id)}
        for status in (DEAD, PENDING, DELIVERED, ACKED):
            if status in statuses:
                return status
        return None

    def _deny(self, reader: str, action: str, why: str) -> NoReturn:
        """Refuse and record an access a reader is not allowed."""
        self.denied += 1
        who = parse_address(reader)
        self.events.emit("mail.access_denied", agent=who.agent, task_id=who.task_id,
                         data={"reader": reader, "action": action, "why": why})
        raise MailAccessError(f"{reader!r} may not {action}: {why}; this was refused and "
                              "recorded")

    def view(self, delivery: Delivery) -> Mail:
        return delivery.mail.view(delivery)

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
            for existing in await self.store.load_delegations(unreported_only=False):
                if existing.delegator == reader and existing.key == key:
                    return existing
        record = runtime.new_task(agent, instruction, created_by=reader,
                                  parent_id=origin.task_id)
        delegation = Delegation(task_id=record.id, agent=agent, delegator=reader,
                                reply_to=reply_to or reader, correlation_id=self._ids("c"),
                                key=key, created_at=time.time())
        # The task and its delegation commit together: a delegator killed in between
        # finds its delegation (and only one task) when it redoes the call.
        try:
            await runtime.store.create_task(record, mail=[DelegationChange(delegation, True)])
        except ConflictError:
            for existing in await self.store.load_delegations(unreported_only=False):
                if existing.delegator == reader and existing.key == key:
                    return existing
            raise
        self._delegations[record.id] = delegation
        self.events.emit("mail.delegated", agent=origin.agent, task_id=origin.task_id,
                         correlation_id=delegation.correlation_id, causation_id=record.id,
                         data={"task_id": record.id, "to_agent": agent,
                               "instruction": instruction[:500],
                               "reply_to": delegation.reply_to})
        runtime.launch_task(record)
        return delegation

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

    def _require_runtime(self, action: str) -> Runtime:
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
            if record is not None and record.state in _FINAL:
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

    # channels -----------------------------------------------------------------
    def _channel(self, name: str) -> Channel:
        channel = self._channels.get(name.removeprefix("#"))
        if channel is None:
            known = ", ".join(f"#{c}" for c in sorted(self._channels)) or "none"
            raise MailError(f"unknown channel '#{name.removeprefix('#')}' (channels: {known})")
        return channel

    def channels(self, member: str | None = None) -> list[Channel]:
        return [c for c in self._channels.values() if member is None or member in c.members]

    def channel(self, name: str) -> Channel:
        return self._channel(name)

    def _check_member(self, member: str) -> None:
        try:
            address = parse_member(member)
        except ValueError as exc:
            raise MailError(str(exc)) from None
        if address.kind is AddressKind.AGENT:
            self._check_agent(address.name)

    async def create_channel(self, name: str, members: Iterable[str] = (), *,
                             topic: str = "", created_by: str = "person:operator") -> Channel:
        name = name.removeprefix("#")
        if not re.fullmatch(NAME_PATTERN, name):
            raise MailError(f"invalid channel name {name!r}: use lower case letters, digits, "
                            "'-' and '_' (at most 64)")
        if name in self._channels:
            raise MailError(f"channel #{name} already exists")
        members = list(dict.fromkeys(members))
        for member in members:
            self._check_member(member)
        now = time.time()
        channel = Channel(name, {}, topic, now, created_by)
        self._channels[name] = channel
        await self._committer.commit(ChannelUpsert(name, topic, now, created_by,
                                                   wakeup=not self.live))
        await self.add_members(name, members)
        self.events.emit("mail.channel_created", data={"channel": name, "by": created_by,
                                                       "members": members})
        return channel

    async def add_members(self, channel: str, members: Iterable[str]) -> list[str]:
        """Add members; returns those that were not members yet."""
        found = self._channel(channel)
        wanted = list(dict.fromkeys(members))
        for member in wanted:
            self._check_member(member)
        added = [m for m in wanted if m not in found.members]
        now = time.time()
        for member in added:
            found.members[member] = now
        await self._committer.commit_all([MemberChange(found.name, m, True, now,
                                                       wakeup=not self.live) for m in added])
        if added:
            self.events.emit("mail.channel_members", data={"channel": found.name,
                                                           "added": added})
        return added

    async def remove_member(self, channel: str, member: str) -> bool:
        found = self._channel(channel)
        if found.members.pop(member, None) is None:
            return False
        await self._committer.commit(MemberChange(found.name, member, False, time.time(),
                                                  wakeup=not self.live))
        self.events.emit("mail.channel_members", data={"channel": found.name,
                                                       "removed": [member]})
        return True

    async def post(self, sender: str, channel: str, body: str, subject: str = "",
                   **fields: Any) -> Sent:
        """Post to a channel: every member but the sender gets it."""
        return await self.send(sender, "#" + channel.removeprefix("#"), subject, body,
                               **fields)

    async def history(self, reader: str | None, channel: str, limit: int = 50,
                      before_seq: int | None = None) -> list[Mail]:
        """A channel's posts, oldest first; members only (``None``: the operator)."""
        await self.flush()  # read this process's own writes
        found = self._channel(channel)
        if reader is not None:
            identity = parse_address(reader).agent or reader
            if identity not in found.members:
                self._deny(reader, f"read #{found.name}",
                           f"{identity!r} is not a member of #{found.name}")
        mails = await self.store.list_mail(recipient="#" + found.name, limit=limit,
                                           before_seq=before_seq)
        return [m.view() for m in mails]

    async def mark_read(self, channel: str, member: str) -> None:
        """Move ``member``'s read cursor in ``channel`` to the latest post."""
        found = self._channel(channel)
        if member not in found.members:
            raise MailError(f"{member!r} is not a member of #{found.name}")
        await self._committer.commit(CursorMove(found.name, member, None))

    async def unread(self, member: str) -> dict[str, int]:
        """For each of ``member``'s channels, how many posts it has not read."""
        await self.flush()  # read this process's own writes
        return {c.name: await self.store.unread_count(c.name, member)
                for c in self.channels(member)}

    # queries -----------------------------------------------------------------
    async def thread(self, reader: str | None, thread_id: str, limit: int = 200
                     ) -> list[Mail]:
        await self.flush()  # read this process's own writes
        mails = await self.store.list_mail(thread_id=thread_id, limit=limit)
        return [m.view() for m in mails if await self._may_see(reader, m)]

    async def conversation(self, a: str, b: str, limit: int = 100) -> list[Mail]:
        """1-1 mail between ``a`` and ``b`` either way (an agent includes its tasks)."""
        await self.flush()  # read this process's own writes
        mails = await self.store.list_mail(between=(a, b), limit=limit)
        return [m.view() for m in mails]

    async def _may_see(self, reader: str | None, mail: Envelope) -> bool:
        return reader is None or (await self._access(reader, mail))[0]

    async def dead_letters(self, owner: str | None = None, limit: int = 100) -> list[Mail]:
        await self.flush()  # read this process's own writes
        found = await self.store.list_deliveries(owner=owner, status=DEAD, limit=limit)
        return [d.mail.view(d) for d in found]

    async def retry(self, mail_id: str, owner: str | None = None) -> int:
        """Send dead-lettered mail again (to ``owner``, or every mailbox it died in)."""
        await self.flush()  # read this process's own writes
        dead = [d for d in await self.store.deliveries_of(mail_id)
                if d.status == DEAD and (owner is None or d.owner == owner)]
        if not dead:
            where = f" for {owner!r}" if owner else ""
            raise MailError(f"mail {mail_id!r} is not in a dead-letter box{where}")
        for delivery in dead:
            delivery.status = PENDING
            delivery.attempts = 0
            delivery.lease_until = None
            delivery.order = next(self._order)
            if self._durable:
                await self._committer.commit(DeliveryState(delivery.state_row(),
                                                           not self.live))
            if self.live:
                self._arrive(delivery)
            who = parse_address(delivery.owner)
            self.events.emit("mail.retried", agent=who.agent, task_id=who.task_id,
                             data={"mail_id": mail_id, "owner": delivery.owner})
        return len(dead)

    async def list_mail(self, *, owner: str | None = None, status: str | None = None,
                   sender: str | None = None, limit: int = 100) -> list[Mail]:
        await self.flush()  # read this process's own writes
        found = await self.store.list_deliveries(owner=owner, status=status, sender=sender,
                                                 limit=limit)
        return [d.mail.view(d) for d in found]

    async def deliveries(self, mail_id: str) -> list[Mail]:
        await self.flush()  # read this process's own writes
        return [d.mail.view(d) for d in await self.store.deliveries_of(mail_id)]

    def stats(self) -> dict[str, int]:
        return {"open": len(self._open), "writes": self._committer.writes,
                "batches": self._committer.batches, "denied": self.denied,
                "waiters": len({w for b in self._boxes.values() for w in b.waiters})}
