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
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from wakeful.core.mail_records import PENDING, Change
from wakeful.errors import MailError
from wakeful.mailbox.channels import Channels
from wakeful.mailbox.queries import Queries
from wakeful.mailbox.requests import Requests
from wakeful.store.bells import Bells

if TYPE_CHECKING:
    from wakeful.mailbox.host import MailHost

_HORIZON_RETRIES_S = (0.003, 0.006, 0.012, 0.025, 0.05)
log = structlog.get_logger("wakeful.mailbox")
OPERATOR = None  # the reader the CLI acts as: sees everything


class Mailbox(Requests, Channels, Queries):
    """Durable asynchronous mail between agents, tasks and people (a runtime service).

    One object composed of its parts: :mod:`~wakeful.mailbox.delivery`,
    :mod:`~wakeful.mailbox.sending`, :mod:`~wakeful.mailbox.reading`,
    :mod:`~wakeful.mailbox.requests`, :mod:`~wakeful.mailbox.channels` and
    :mod:`~wakeful.mailbox.queries`, over the state in :mod:`~wakeful.mailbox.state`;
    this module holds its lifecycle."""

    name = "mailbox"

    # lifecycle -------------------------------------------------------------
    async def start(self, runtime: MailHost) -> None:
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

    async def _load_open(self) -> None:
        self._take_in(await self.store.load_open(), frozenset())

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
        bells = self._runtime.store.bells if self._runtime is not None else Bells()
        bell = bells.subscribe(("mail",))
        try:
            while True:
                rang = await bell.wait(self.poll_interval_s)
                seen = watermark
                watermark = await self._take_wakeups(watermark)
                # A commit rang, but its rows may sit above the read horizon for a few
                # milliseconds (an older transaction elsewhere still running): look
                # again soon rather than at the next poll.
                for delay in _HORIZON_RETRIES_S if rang and watermark == seen else ():
                    await asyncio.sleep(delay)
                    watermark = await self._take_wakeups(watermark)
                    if watermark != seen:
                        break
        finally:
            bells.unsubscribe(bell)

    async def _take_wakeups(self, watermark: int) -> int:
        """Take in the deliveries and channel changes other processes committed."""
        try:
            watermark, wakeups = await self.store.take_wakeups(watermark)
            if not wakeups:
                return watermark
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
        return watermark

    def stats(self) -> dict[str, int]:
        return {"open": len(self._open), "writes": self._committer.writes,
                "batches": self._committer.batches, "denied": self.denied,
                "waiters": len({w for b in self._boxes.values() for w in b.waiters})}
