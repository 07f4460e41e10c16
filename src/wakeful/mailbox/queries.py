"""Queries over stored mail (threads, conversations, dead letters, deliveries) for
tools, the CLI and the web UI, and retrying dead-lettered mail.
"""

from __future__ import annotations

from wakeful.core.mail import Mail, parse_address
from wakeful.core.mail_records import DEAD, PENDING, DeliveryState, Envelope
from wakeful.errors import MailError
from wakeful.mailbox.reading import Reading


class Queries(Reading):
    """The mailbox's queries and dead-letter retry."""

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
                   sender: str | None = None, limit: int = 100,
                   after: tuple[int, str] | None = None) -> list[Mail]:
        """The newest ``limit`` deliveries as mail, or those placed after ``after``
        (a mail's seq and a delivery's owner), oldest first."""
        await self.flush()  # read this process's own writes
        found = await self.store.list_deliveries(owner=owner, status=status, sender=sender,
                                                 limit=limit, after=after)
        return [d.mail.view(d) for d in found]

    async def deliveries(self, mail_id: str) -> list[Mail]:
        await self.flush()  # read this process's own writes
        return [d.mail.view(d) for d in await self.store.deliveries_of(mail_id)]
