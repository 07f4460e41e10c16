"""Channels: group conversations, their members, posts, history and read cursors.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from wakeful.core.mail import AddressKind, Mail, parse_address, parse_member
from wakeful.core.mail_records import Channel, ChannelUpsert, CursorMove, MemberChange, Sent
from wakeful.errors import MailError
from wakeful.mailbox.sending import Sending
from wakeful.project.definitions import NAME_PATTERN


class Channels(Sending):
    """The mailbox's channels."""

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
