"""Where mail lives: the interface every mail store implements, and the in-memory one.

The mailbox keeps the open deliveries in memory (that is what makes wake-on-mail a
notification, not a query) and writes every change through :meth:`MailStore.apply`,
in order, one transaction per batch. A durable store (SQLite now; PostgreSQL, Redis,
NATS later) must commit a batch before ``apply`` returns, because the mailbox tells a
sender its mail is sent only then. :class:`MemoryMailStore` is the in-process store:
nothing survives the process, in exchange for no I/O at all.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Iterable, Sequence

from wakeful.core.mail import is_from
from wakeful.core.mail_records import (
    OPEN_STATES,
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
    NewEvents,
    NewMail,
)

Wakeup = tuple[str, str | None, str | None]
"""(kind, mail id, owner): ``("delivery", id, owner)`` or ``("channels", None, None)``."""


# What marks a stored payload as a question's (payloads are stored as compact JSON):
# the backends' partial index on questions and their query both use this pattern.
QUESTIONS_LIKE = '%"question":true%'


class MailStore(abc.ABC):
    durable: bool = True

    @abc.abstractmethod
    async def apply(self, changes: Sequence[Change]) -> None:
        """Apply changes in order, atomically; committed when this returns.

        A :class:`NewMail` whose sender already sent a mail with the same idempotency key
        is not stored: the store sets its ``duplicate_of`` to the mail kept.
        """

    # what the mailbox loads when it starts ------------------------------
    @abc.abstractmethod
    async def load_open(self, agent: str | None = None) -> list[Delivery]:
        """Every pending or delivered (unacknowledged) delivery, in delivery order;
        with ``agent``, those of that agent's mailbox and its tasks' mailboxes."""

    @abc.abstractmethod
    async def get_delegation(self, task_id: str) -> Delegation | None:
        """The delegation that started task ``task_id``, if one did."""

    @abc.abstractmethod
    async def load_deliveries(self, keys: Iterable[tuple[str, str]]) -> list[Delivery]: ...

    @abc.abstractmethod
    async def load_channels(self) -> dict[str, Channel]: ...

    @abc.abstractmethod
    async def load_delegations(self, unreported_only: bool = True) -> list[Delegation]: ...

    @abc.abstractmethod
    async def take_wakeups(self, after: int) -> tuple[int, list[Wakeup]]:
        """Changes other processes made since watermark ``after``; the new watermark."""

    # queries --------------------------------------------------------------
    @abc.abstractmethod
    async def get_mail(self, mail_id: str) -> Envelope | None: ...

    @abc.abstractmethod
    async def find_mail(self, sender: str, idempotency_key: str) -> Envelope | None: ...

    @abc.abstractmethod
    async def deliveries_of(self, mail_id: str) -> list[Delivery]: ...

    @abc.abstractmethod
    async def list_deliveries(self, *, owner: str | None = None, status: str | None = None,
                              sender: str | None = None, limit: int = 100,
                              after: tuple[int, str] | None = None) -> list[Delivery]:
        """The newest ``limit`` deliveries, newest last. With ``after`` (a mail's seq and
        a delivery's owner: where a page ended), the first ``limit`` placed after it in
        (seq, owner) order, so that a listing pages through all of them; commit-ordered
        (a delivery that commits late is never skipped)."""

    @abc.abstractmethod
    async def list_mail(self, *, recipient: str | None = None, sender: str | None = None,
                        thread_id: str | None = None, correlation_id: str | None = None,
                        between: tuple[str, str] | None = None,
                        before_seq: int | None = None, after_seq: int | None = None,
                        limit: int = 100) -> list[Envelope]:
        """Mail, newest last: the newest ``limit`` (before ``before_seq``), or, with
        ``after_seq``, the oldest ``limit`` after it (paging forwards, read in order).
        ``between`` is a 1-1 conversation: mail either way."""

    @abc.abstractmethod
    async def unanswered_questions(self, recipient: str, *, after_seq: int = 0,
                                   limit: int = 100) -> list[Envelope]:
        """Mail to ``recipient`` that may be a question (its payload holds
        ``"question":true``) and has no reply yet (no mail in its correlation with
        ``in_reply_to`` its id): the oldest ``limit`` after ``after_seq``, oldest first.
        The match is on the stored text, so the caller checks the payload itself; an
        index keeps this a read of the questions, not of all the recipient's mail."""

    @abc.abstractmethod
    async def read_cursors(self, member: str) -> dict[str, tuple[int, int]]:
        """For each channel of ``member``: (read cursor, latest post seq)."""

    @abc.abstractmethod
    async def unread_count(self, channel: str, member: str) -> int: ...


class MemoryMailStore(MailStore):
    """Everything in dicts; for in-process runs, tests and benchmarks."""

    durable = False

    def __init__(self) -> None:
        self.mail: dict[str, Envelope] = {}
        self.deliveries: dict[tuple[str, str], Delivery] = {}
        self.channels: dict[str, Channel] = {}
        self.cursors: dict[tuple[str, str], int] = {}
        self.delegations: dict[str, Delegation] = {}
        self._keys: dict[tuple[str, str], Envelope] = {}
        self._seq = itertools.count(1)

    async def apply(self, changes: Sequence[Change]) -> None:
        self.apply_now(changes)

    def apply_now(self, changes: Sequence[Change]) -> None:
        """Apply at once, without suspending (the in-process mailbox's fast path)."""
        for change in changes:
            if type(change) is NewMail:
                self.add_mail(change)
            elif isinstance(change, DeliveryState):
                pass  # the deliveries here are the mailbox's own objects: already current
            elif isinstance(change, NewEvents):
                pass
            elif isinstance(change, ChannelUpsert):
                channel = self.channels.setdefault(change.channel, Channel(
                    change.channel, created_at=change.created_at,
                    created_by=change.created_by))
                channel.topic = change.topic or channel.topic
            elif isinstance(change, MemberChange):
                members = self.channels[change.channel].members
                if change.added:
                    members.setdefault(change.member, change.at)
                else:
                    members.pop(change.member, None)
            elif isinstance(change, CursorMove):
                self._move_cursor(change)
            elif isinstance(change, DelegationChange):
                self.delegations[change.delegation.task_id] = change.delegation

    def add_mail(self, change: NewMail) -> None:
        mail = change.mail
        if mail.idempotency_key is not None:
            key = (mail.sender, mail.idempotency_key)
            kept = self._keys.get(key)
            if kept is not None:
                change.duplicate_of = kept
                return
            self._keys[key] = mail
        mail.seq = next(self._seq)
        self.mail[mail.id] = mail
        for delivery in change.deliveries:
            self.deliveries[delivery.key] = delivery

    def _move_cursor(self, change: CursorMove) -> None:
        key = (change.channel, change.member)
        if change.mail_id is None:
            seq = max((m.seq or 0 for m in self.mail.values()
                       if m.recipient == "#" + change.channel), default=0)
        else:
            found = self.mail.get(change.mail_id)
            seq = found.seq or 0 if found else 0
        self.cursors[key] = max(self.cursors.get(key, 0), seq)

    async def load_open(self, agent: str | None = None) -> list[Delivery]:
        return sorted((d for d in self.deliveries.values() if d.status in OPEN_STATES
                       and (agent is None or d.owner.split("/", 1)[0] == agent)),
                      key=lambda d: d.mail.seq or 0)

    async def get_delegation(self, task_id: str) -> Delegation | None:
        return self.delegations.get(task_id)

    async def load_deliveries(self, keys: Iterable[tuple[str, str]]) -> list[Delivery]:
        return [self.deliveries[k] for k in keys if k in self.deliveries]

    async def load_channels(self) -> dict[str, Channel]:
        return {name: Channel(c.name, dict(c.members), c.topic, c.created_at, c.created_by)
                for name, c in self.channels.items()}

    async def load_delegations(self, unreported_only: bool = True) -> list[Delegation]:
        return [d for d in self.delegations.values()
                if not unreported_only or d.reported_at is None]

    async def take_wakeups(self, after: int) -> tuple[int, list[Wakeup]]:
        return after, []  # no other process shares this store

    async def get_mail(self, mail_id: str) -> Envelope | None:
        return self.mail.get(mail_id)

    async def find_mail(self, sender: str, idempotency_key: str) -> Envelope | None:
        return self._keys.get((sender, idempotency_key))

    async def deliveries_of(self, mail_id: str) -> list[Delivery]:
        return [d for (m, _), d in self.deliveries.items() if m == mail_id]

    async def list_deliveries(self, *, owner: str | None = None, status: str | None = None,
                              sender: str | None = None, limit: int = 100,
                              after: tuple[int, str] | None = None) -> list[Delivery]:
        found = [d for d in self.deliveries.values()
                 if (owner is None or d.owner == owner) and (status is None or d.status == status)
                 and (sender is None or d.mail.sender == sender)]
        if after is None:
            return found[-limit:]
        placed = sorted(((d.mail.seq or 0, d.owner), d) for d in found)
        return [d for place, d in placed if place > after][:limit]

    async def list_mail(self, *, recipient: str | None = None, sender: str | None = None,
                        thread_id: str | None = None, correlation_id: str | None = None,
                        between: tuple[str, str] | None = None,
                        before_seq: int | None = None, after_seq: int | None = None,
                        limit: int = 100) -> list[Envelope]:
        def wanted(m: Envelope) -> bool:
            return ((recipient is None or m.recipient == recipient)
                    and (sender is None or m.sender == sender)
                    and (thread_id is None or m.thread_id == thread_id)
                    and (correlation_id is None or m.correlation_id == correlation_id)
                    and (before_seq is None or (m.seq or 0) < before_seq)
                    and (after_seq is None or (m.seq or 0) > after_seq)
                    and (between is None or any(
                        is_from(m.sender, x) and is_from(m.recipient, y)
                        for x, y in (between, between[::-1]))))
        found = [m for m in self.mail.values() if wanted(m)]
        return found[:limit] if after_seq is not None else found[-limit:]

    async def unanswered_questions(self, recipient: str, *, after_seq: int = 0,
                                   limit: int = 100) -> list[Envelope]:
        answered = {m.in_reply_to for m in self.mail.values() if m.in_reply_to}
        found = [m for m in self.mail.values() if m.recipient == recipient
                 and (m.payload or {}).get("question") is True and (m.seq or 0) > after_seq
                 and m.id not in answered]
        return found[:limit]

    async def read_cursors(self, member: str) -> dict[str, tuple[int, int]]:
        result = {}
        for name, channel in self.channels.items():
            if member in channel.members:
                latest = max((m.seq or 0 for m in self.mail.values()
                              if m.recipient == "#" + name), default=0)
                result[name] = (self.cursors.get((name, member), 0), latest)
        return result

    async def unread_count(self, channel: str, member: str) -> int:
        cursor = self.cursors.get((channel, member), 0)
        return sum(1 for m in self.mail.values()
                   if m.recipient == "#" + channel and (m.seq or 0) > cursor
                   and not is_from(m.sender, member))
