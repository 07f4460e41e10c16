"""Delivery: which open deliveries this process holds, handing them to readers under a
lease, and giving back or burying the ones that fail (see the guarantees in
:mod:`wakeful.mailbox.service`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Collection, Iterable

from wakeful.core.mail import parse_address
from wakeful.core.mail_records import DEAD, DELIVERED, PENDING, Delivery, DeliveryState
from wakeful.core.states import TaskState
from wakeful.mailbox.boxes import Box, Waiter
from wakeful.mailbox.state import MailboxState


class Delivering(MailboxState):
    """The mailbox's delivery: open deliveries, leases and redelivery."""

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

    # delivery --------------------------------------------------------------
    def _box(self, owner: str) -> Box:
        box = self._boxes.get(owner)
        if box is None:
            box = self._boxes[owner] = Box()
        return box

    def _arrive(self, delivery: Delivery) -> None:
        """A delivery became visible: hand it to a waiting reader, or keep it."""
        self._arrive_all((delivery,))

    def _arrive_all(self, deliveries: Iterable[Delivery]) -> None:
        """Deliveries became visible, in order: each is handed to a waiting reader, or
        kept. One loop for all of a mail's deliveries (a channel post reaches every
        member at once), its lookups made once."""
        owned, opened, boxes = self._owned, self._open, self._boxes
        listeners = self._listeners
        for delivery in deliveries:
            if owned is not None and not self._mine(delivery.owner):
                opened.pop(delivery.key, None)  # its agent's worker delivers it
                continue
            opened[delivery.key] = delivery
            box = boxes.get(delivery.owner) or self._box(delivery.owner)
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
            for listener in listeners:
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

    def _unregister(self, waiter: Waiter) -> None:
        for owner in waiter.owners:
            box = self._boxes.get(owner)
            if box is not None:
                box.waiters.pop(waiter, None)
