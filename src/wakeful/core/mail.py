"""Mail at the edge: addresses, what a sender writes, what a reader sees, filters.

Everything a model, a person or another process hands to the mailbox passes through
the pydantic models here, so a malformed mail is refused with the field that was wrong
before anything is stored. Inside, the mailbox works on the plain records of
:mod:`wakeful.core.mail_records`.

Addresses are plain strings a model can write:

* ``researcher`` — an agent's mailbox, shared by all its tasks;
* ``researcher/t_abc`` — one task's own mailbox (replies to its requests land here);
* ``#team`` — a channel: every member gets the post;
* ``*`` — broadcast to every agent;
* ``person:ada`` — a person (the web UI and the CLI speak as people).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from wakeful.text import describe_text, unstorable

AGENT_NAME = r"[a-z0-9][a-z0-9_-]{0,63}"
_AGENT = re.compile(AGENT_NAME)
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_PERSON = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
ADDRESS_HELP = ("an agent name ('writer'), a task ('writer/t_123'), a channel ('#team'), "
                "'*' for every agent, a person ('person:ada'), or a remote A2A agent "
                "('a2a:translator')")
PERSON_PREFIX = "person:"
REMOTE_PREFIX = "a2a:"  # a remote A2A agent: an agent of the team like any other


class AddressKind(StrEnum):
    AGENT = "agent"
    TASK = "task"
    CHANNEL = "channel"
    BROADCAST = "broadcast"
    PERSON = "person"


@dataclass(frozen=True, slots=True)
class Address:
    kind: AddressKind
    name: str  # agent, channel or person name; "*" for broadcast
    task_id: str | None = None

    @property
    def agent(self) -> str | None:
        """The agent behind an agent or task address."""
        return self.name if self.kind in (AddressKind.AGENT, AddressKind.TASK) else None

    def __str__(self) -> str:
        if self.kind is AddressKind.TASK:
            return f"{self.name}/{self.task_id}"
        if self.kind is AddressKind.CHANNEL:
            return f"#{self.name}"
        if self.kind is AddressKind.PERSON:
            return PERSON_PREFIX + self.name
        return self.name


@lru_cache(maxsize=8192)
def parse_address(text: str) -> Address:
    """Parse an address; ValueError says what addresses look like."""
    if not isinstance(text, str):
        raise ValueError(f"an address must be a string, got {type(text).__name__}")
    if text == "*":
        return Address(AddressKind.BROADCAST, "*")
    if text.startswith("#"):
        if _AGENT.fullmatch(text[1:]):
            return Address(AddressKind.CHANNEL, text[1:])
        raise ValueError(f"{text!r} is not a valid channel: after '#' use lower case "
                         "letters, digits, '-' and '_' (at most 64)")
    if text.startswith(PERSON_PREFIX):
        name = text[len(PERSON_PREFIX):]
        if _PERSON.fullmatch(name):
            return Address(AddressKind.PERSON, name)
        raise ValueError(f"{text!r} is not a valid person: after 'person:' use letters, "
                         "digits, '.', '@', '-' and '_' (at most 64)")
    if text.startswith(REMOTE_PREFIX):
        text = text[len(REMOTE_PREFIX):]
    agent, slash, task = text.partition("/")
    if _AGENT.fullmatch(agent):
        if not slash:
            return Address(AddressKind.AGENT, agent)
        if _TASK_ID.fullmatch(task):
            return Address(AddressKind.TASK, agent, task)
    raise ValueError(f"{text!r} is not a valid address; expected {ADDRESS_HELP}")


def parse_member(text: str) -> Address:
    """A channel member is an agent or a person."""
    address = parse_address(text)
    if address.kind not in (AddressKind.AGENT, AddressKind.PERSON):
        raise ValueError(f"{text!r} cannot be a channel member: members are agents "
                         "('writer') or people ('person:ada')")
    return address


def is_from(sender: str, who: str) -> bool:
    """Was mail from ``sender`` sent by ``who`` (an address, or an agent and its tasks)?"""
    return sender == who or (sender.startswith(who) and sender[len(who):len(who) + 1] == "/")


def agent_of(address: str) -> str | None:
    """``writer/t_1`` -> ``writer``; None for channels, broadcast and people."""
    return parse_address(address).agent


Priority = Literal["low", "normal", "high", "urgent"]
PRIORITIES: dict[str, int] = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
PRIORITY_NAMES: dict[int, str] = {v: k for k, v in PRIORITIES.items()}


def _check_address(value: str | None) -> str | None:
    if value is not None:
        parse_address(value)
    return value


def check_storable_field(value: Any) -> Any:
    """Refuse text the store cannot hold (a lone surrogate, NUL) in any field, so one
    bad mail is refused alone instead of failing the batch it would be written in."""
    if isinstance(value, str):
        why = describe_text(value)
    else:
        found = unstorable(value, "")
        why = None if found is None else f"at {found}"
    if why is not None:
        raise ValueError(why)
    return value


class MailDraft(BaseModel):
    """What a sender writes. Size limits are the mailbox's (they are configurable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str = Field(description=ADDRESS_HELP)
    subject: str = ""
    body: str = ""
    payload: dict[str, JsonValue] | None = None
    priority: Priority = "normal"
    thread_id: str | None = Field(default=None, max_length=128)
    in_reply_to: str | None = Field(default=None, max_length=128)
    reply_to: str | None = Field(default=None, description="where replies go; default: "
                                 "the sender's agent")
    correlation_id: str | None = Field(default=None, max_length=128)
    causation_id: str | None = Field(default=None, max_length=128)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)

    _storable = field_validator("*", mode="before")(check_storable_field)
    _to = field_validator("to")(_check_address)
    _reply_to = field_validator("reply_to")(_check_address)


DeliveryStatus = Literal["pending", "delivered", "acked", "dead"]


class Mail(BaseModel):
    """A mail as a reader sees it: the message, and its delivery to that reader.

    ``status`` and the delivery timestamps describe one delivery (to ``owner``); in a
    listing without a reader they sum up all deliveries of the mail.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    seq: int | None = None
    sender: str
    recipient: str
    subject: str
    body: str
    payload: dict[str, Any] | None = None
    priority: Priority = "normal"
    thread_id: str
    in_reply_to: str | None = None
    reply_to: str
    correlation_id: str | None = None
    causation_id: str | None = None
    idempotency_key: str | None = None
    created_at: float
    owner: str | None = None
    status: DeliveryStatus | None = None
    attempts: int = 0
    delivered_at: float | None = None
    read_at: float | None = None
    acked_at: float | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class MailFilter:
    """Which mail a reader wants. Every given field must match.

    ``sender`` matches that exact address, or any task of it when it names an agent;
    ``subject`` matches a case-insensitive substring; ``payload`` maps dotted paths
    (``"order.id"``) to the value they must hold.
    """

    sender: str | None = None
    thread_id: str | None = None
    subject: str | None = None
    correlation_id: str | None = None
    in_reply_to: str | None = None
    payload: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, *, sender: str | None = None, thread_id: str | None = None,
           subject: str | None = None, correlation_id: str | None = None,
           in_reply_to: str | None = None, payload: dict[str, Any] | None = None
           ) -> MailFilter | None:
        """A filter, or None when nothing is asked (which matches everything)."""
        if sender is not None:
            parse_address(sender)
        items = tuple(sorted((payload or {}).items()))
        if (sender, thread_id, subject, correlation_id, in_reply_to) == (None,) * 5 \
                and not items:
            return None
        return cls(sender, thread_id, subject.lower() if subject else subject,
                   correlation_id, in_reply_to, items)

    def matches(self, mail: Any) -> bool:
        """``mail`` is an :class:`~wakeful.core.mail_records.Envelope` (duck-typed)."""
        if self.correlation_id is not None and mail.correlation_id != self.correlation_id:
            return False
        if self.sender is not None and not is_from(mail.sender, self.sender):
            return False
        if self.thread_id is not None and mail.thread_id != self.thread_id:
            return False
        if self.in_reply_to is not None and mail.in_reply_to != self.in_reply_to:
            return False
        if self.subject is not None and self.subject not in mail.subject.lower():
            return False
        return all(_lookup(mail.payload, path) == wanted for path, wanted in self.payload)

    def describe(self) -> str:
        parts = []
        if self.sender:
            parts.append(f"from {self.sender}")
        if self.subject:
            parts.append(f"about {self.subject!r}")
        if self.thread_id:
            parts.append(f"in thread {self.thread_id}")
        if self.correlation_id:
            parts.append(f"with correlation {self.correlation_id}")
        if self.in_reply_to:
            parts.append(f"replying to {self.in_reply_to}")
        parts.extend(f"{path}={value!r}" for path, value in self.payload)
        return " ".join(parts)


_MISSING = object()


def _lookup(payload: Any, path: str) -> Any:
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value
