"""The mailbox's shared state, and the small helpers every part of it uses.

:class:`~wakeful.mailbox.service.Mailbox` is one object (one set of open deliveries,
boxes, channels and delegations), composed of parts that each have one job: delivery,
sending, reading, request/reply and delegation, channels and queries. They share the
state set up here.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, NoReturn

from wakeful.core.mail import Address, AddressKind, parse_address
from wakeful.core.mail_records import Change, Channel, Delegation, Delivery
from wakeful.core.scope import TaskScope
from wakeful.errors import MailAccessError, MailError, UnknownAgentError
from wakeful.ids import _b32
from wakeful.mailbox.boxes import Box, Key, LeaseClock
from wakeful.mailbox.committer import BatchCommitter, Committer, DirectCommitter
from wakeful.observe.events import EventLog
from wakeful.project.definitions import MailboxConfig
from wakeful.store.mail import MailStore, MemoryMailStore

if TYPE_CHECKING:
    from wakeful.mailbox.host import MailHost


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


def _owners_of(reader: str) -> tuple[str, ...]:
    address = parse_address(reader)
    if address.kind is AddressKind.TASK:
        return (reader, address.name)
    if address.kind in (AddressKind.AGENT, AddressKind.PERSON):
        return (reader,)
    raise MailError(f"{reader!r} cannot read mail: readers are agents, tasks and people")


class MailboxState:
    """What the mailbox's parts share: its stores, boxes, open deliveries, channels
    and delegations."""

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
        self._runtime: MailHost | None = None
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

    async def flush(self) -> None:
        """Wait until every change made so far is committed."""
        if self._opened:
            await self._committer.barrier()

    # directory and validation ---------------------------------------------
    def _known_agents(self) -> Collection[str] | None:
        return self._agents() if self._agents is not None else None

    def _check_agent(self, name: str) -> None:
        known = self._known_agents()
        if known is not None and name not in known:
            raise UnknownAgentError(name, list(known))

    def _deny(self, reader: str, action: str, why: str) -> NoReturn:
        """Refuse and record an access a reader is not allowed."""
        self.denied += 1
        who = parse_address(reader)
        self.events.emit("mail.access_denied", agent=who.agent, task_id=who.task_id,
                         data={"reader": reader, "action": action, "why": why})
        raise MailAccessError(f"{reader!r} may not {action}: {why}; this was refused and "
                              "recorded")

    # channels -----------------------------------------------------------------
    def _channel(self, name: str) -> Channel:
        channel = self._channels.get(name.removeprefix("#"))
        if channel is None:
            known = ", ".join(f"#{c}" for c in sorted(self._channels)) or "none"
            raise MailError(f"unknown channel '#{name.removeprefix('#')}' (channels: {known})")
        return channel

    # provided by the parts the mailbox is composed of -----------------------------
    def _lease_expired(self, delivery: Delivery) -> None:
        raise NotImplementedError  # see wakeful.mailbox.delivery

    def _after_commit(self, changes: Sequence[Change]) -> None:
        raise NotImplementedError  # see wakeful.mailbox.sending
