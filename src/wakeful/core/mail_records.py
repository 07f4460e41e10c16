"""Plain records the mailbox keeps in memory and in its store.

A mail (:class:`Envelope`) is written once and never changes. Each mailbox it goes to
gets a :class:`Delivery` — one for a 1-1 mail, one per member for a channel post, one
per agent for a broadcast — and that is what moves through ``pending -> delivered ->
acked`` (or ``dead``). Changes to the store are expressed as the small records at the
bottom, which a store applies in order, in one transaction per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wakeful.core.mail import PRIORITY_NAMES, Mail
from wakeful.core.records import Event

PENDING = "pending"  # waiting for a reader
DELIVERED = "delivered"  # handed to a reader, who has not acknowledged it yet
ACKED = "acked"  # handled: never delivered again
DEAD = "dead"  # delivered max_deliveries times without an ack: in the dead-letter box
OPEN_STATES = (PENDING, DELIVERED)


@dataclass(slots=True, eq=False)
class Envelope:
    id: str
    sender: str
    recipient: str
    subject: str
    body: str
    payload: dict[str, Any] | None
    priority: int
    thread_id: str
    in_reply_to: str | None
    reply_to: str
    correlation_id: str | None
    causation_id: str | None
    idempotency_key: str | None
    created_at: float
    seq: int | None = None  # the store's order; set when read back from it
    payload_json: str | None = None  # the payload as stored (measured against the limit)

    def view(self, delivery: Delivery | None = None, status: str | None = None) -> Mail:
        d = delivery
        return Mail(
            id=self.id, seq=self.seq, sender=self.sender, recipient=self.recipient,
            subject=self.subject, body=self.body, payload=self.payload,
            priority=PRIORITY_NAMES.get(self.priority, "normal"),  # type: ignore[arg-type]
            thread_id=self.thread_id, in_reply_to=self.in_reply_to, reply_to=self.reply_to,
            correlation_id=self.correlation_id, causation_id=self.causation_id,
            idempotency_key=self.idempotency_key, created_at=self.created_at,
            owner=d.owner if d else None,
            status=(d.status if d else status),  # type: ignore[arg-type]
            attempts=d.attempts if d else 0, delivered_at=d.delivered_at if d else None,
            read_at=d.read_at if d else None, acked_at=d.acked_at if d else None,
            last_error=d.last_error if d else None)


@dataclass(slots=True, eq=False)
class Delivery:
    mail: Envelope
    owner: str  # the mailbox: an agent, agent/task, or person:NAME
    status: str = PENDING
    attempts: int = 0
    delivered_at: float | None = None
    read_at: float | None = None
    acked_at: float | None = None
    lease_until: float | None = None
    last_error: str | None = None
    order: int = 0  # delivery order within the process (memory only)
    holder: str | None = None  # the reader (a task, usually) holding the current lease
    channel: str | None = None  # set for channel posts: whose read cursor to move
    resumed: bool = False  # held by a task that resumes: handed back to it first
    key: tuple[str, str] = field(init=False)  # (mail id, owner): unique

    def __post_init__(self) -> None:
        self.key = (self.mail.id, self.owner)

    def state_row(self) -> tuple[Any, ...]:
        """The mutable part, as the store writes it (taken when the change is made)."""
        return (self.status, self.attempts, self.delivered_at, self.read_at, self.acked_at,
                self.lease_until, self.last_error, self.holder, self.mail.id, self.owner)


@dataclass(slots=True)
class Channel:
    name: str
    members: dict[str, float] = field(default_factory=dict)  # member -> added_at
    topic: str = ""
    created_at: float = 0.0
    created_by: str = ""


@dataclass(slots=True)
class Delegation:
    """A task one agent asked another to run; its outcome goes back as mail."""

    task_id: str
    agent: str
    delegator: str
    reply_to: str
    correlation_id: str
    key: str | None
    created_at: float
    reported_at: float | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """What a send returns: the stored mail, and how it went."""

    mail: Envelope
    duplicate: bool  # an earlier send with the same idempotency key was kept instead
    delivered_to: int  # how many mailboxes got it

    @property
    def id(self) -> str:
        return self.mail.id


# Changes a store applies, in order, one transaction per batch ------------------
@dataclass(slots=True)
class NewMail:
    mail: Envelope
    deliveries: list[Delivery]
    events: list[Event] = field(default_factory=list)  # stored only if the mail is
    wakeup: bool = False  # another process must pick these deliveries up
    duplicate_of: Envelope | None = None  # set by the store: same sender + idempotency key


@dataclass(slots=True)
class DeliveryState:
    row: tuple[Any, ...]  # Delivery.state_row() when the change was made
    wakeup: bool = False


@dataclass(slots=True)
class NewEvents:
    events: list[Event]


@dataclass(slots=True)
class ChannelUpsert:
    channel: str
    topic: str
    created_at: float
    created_by: str
    wakeup: bool = False


@dataclass(slots=True)
class MemberChange:
    channel: str
    member: str
    added: bool  # False: removed
    at: float
    wakeup: bool = False


@dataclass(slots=True)
class CursorMove:
    channel: str
    member: str
    mail_id: str | None  # None: up to the latest post


@dataclass(slots=True)
class DelegationChange:
    delegation: Delegation
    new: bool = False  # insert only: a delegation under the same key is a conflict


Change = (NewMail | DeliveryState | NewEvents | ChannelUpsert | MemberChange | CursorMove
          | DelegationChange)
