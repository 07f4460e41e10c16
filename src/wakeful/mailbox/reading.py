"""Reading: taking mail (claim, receive), giving it back, acknowledging it, and reading
one mail with the access rules of :mod:`wakeful.mailbox.service`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from wakeful.core.mail import Mail, MailFilter, agent_of, is_from, parse_address
from wakeful.core.mail_records import (
    ACKED,
    DEAD,
    DELIVERED,
    PENDING,
    CursorMove,
    Delivery,
    DeliveryState,
    Envelope,
)
from wakeful.errors import MailError, MailTimeoutError
from wakeful.mailbox.boxes import Box, Waiter
from wakeful.mailbox.delivery import Delivering
from wakeful.mailbox.state import _owners_of


class Reading(Delivering):
    """The mailbox's reading side: claims, waits, acks and access checks."""

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

    def ack_with_step(self, delivery: Delivery) -> DeliveryState | None:
        """Acknowledge in memory now; return the change to commit with the caller's own
        write (a tool call's result), or None if there is nothing to commit."""
        if not self._settle_ack(delivery) or not self._durable:
            return None
        return DeliveryState(delivery.state_row(), not self.live)

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

    def view(self, delivery: Delivery) -> Mail:
        return delivery.mail.view(delivery)
