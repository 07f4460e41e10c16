"""Channels: group conversations of agents and people."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from wakeful.core.mail_records import Channel, Envelope
from wakeful.runtime.runtime import Runtime
from wakeful.server import views
from wakeful.server.errors import NotFound
from wakeful.server.identity import CallerDep, speaking_as
from wakeful.server.paging import After, SeqAfter, after_key, mail_after
from wakeful.server.responses import (
    ChannelAdded,
    ChannelsPage,
    ChannelView,
    Posted,
    PostsPage,
    ReadMark,
)
from wakeful.server.routes.deps import Limit, RuntimeDep
from wakeful.server.schemas import MarkRead, Members, NewChannel, NewPost

router = APIRouter(prefix="/api/channels", tags=["channels"])


def _channel(runtime: Runtime, name: str) -> Channel:
    wanted = name.removeprefix("#")
    for channel in runtime.mailbox.channels():
        if channel.name == wanted:
            return channel
    known = ", ".join(f"#{c.name}" for c in runtime.mailbox.channels()) or "none"
    raise NotFound(f"unknown channel '#{wanted}' (channels: {known})")


def channel_view(channel: Channel) -> dict[str, Any]:
    return {"name": channel.name, "topic": channel.topic, "members": list(channel.members),
            "created_at": channel.created_at, "created_by": channel.created_by}


@router.get("", response_model=ChannelsPage, summary="Channels by name, with unread counts "
            "for a member; page with `after` (a channel name) and `next`")
async def list_channels(runtime: RuntimeDep, member: str | None = Query(
        None, description="count unread posts for this member ('person:ada')"),
        limit: Limit = 1000, after: After = None) -> dict[str, Any]:
    unread = await runtime.mailbox.unread(member) if member else {}
    listed = sorted(runtime.mailbox.channels(), key=lambda c: c.name)
    page, more = after_key(listed, lambda c: c.name, after, limit, what="channel")
    return {"channels": [{**channel_view(c), "unread": unread.get(c.name)} for c in page],
            "next": more}


@router.post("", status_code=201, response_model=ChannelView,
             summary="Create a channel (its creator joins it)")
async def create_channel(body: NewChannel, runtime: RuntimeDep,
                         caller: CallerDep) -> dict[str, Any]:
    creator = speaking_as(caller, body.created_by, "body.created_by")
    members = [*body.members, creator]
    channel = await runtime.mailbox.create_channel(body.name, members, topic=body.topic,
                                                   created_by=creator)
    return channel_view(channel)


@router.get("/{name}", response_model=ChannelView, summary="One channel")
async def get_channel(name: str, runtime: RuntimeDep) -> dict[str, Any]:
    return channel_view(_channel(runtime, name))


@router.get("/{name}/posts", response_model=PostsPage, summary="Posts, oldest first: the "
            "newest `limit`, or those `before` a seq (`older`), or `after` one (`next`)")
async def posts(name: str, runtime: RuntimeDep, limit: Limit = 100,
                before_seq: int | None = Query(None, description="as `before`"),
                before: int | None = Query(None, ge=1, description=(
                    "a post's seq: the `limit` posts before it (`older` of a page)")),
                after: SeqAfter = None) -> dict[str, Any]:
    channel = _channel(runtime, name)
    await runtime.mailbox.flush()  # read this process's own writes

    async def fetch(before_seq: int | None, count: int) -> list[Envelope]:
        return await runtime.mailbox.store.list_mail(recipient="#" + channel.name,
                                                     limit=count, before_seq=before_seq)

    if after is not None:
        found, more = await mail_after(runtime.mailbox.store, after, limit,
                                       recipient="#" + channel.name)
        return {"channel": channel.name, "posts": [views.mail_view(m.view()) for m in found],
                "next": more, "older": None}
    found = await fetch(before if before is not None else before_seq, limit + 1)
    older = found[-limit].seq if len(found) > limit else None
    return {"channel": channel.name,
            "posts": [views.mail_view(m.view()) for m in found[-limit:]],
            "next": None, "older": older}


@router.post("/{name}/posts", status_code=201, response_model=Posted, summary="Post as a person")
async def post(name: str, body: NewPost, runtime: RuntimeDep,
               caller: CallerDep) -> dict[str, Any]:
    channel = _channel(runtime, name)
    sender = speaking_as(caller, body.sender, "body.sender")
    if body.join and sender not in channel.members:
        await runtime.mailbox.add_members(channel.name, [sender])
    sent = await runtime.mailbox.post(sender, channel.name, body.body, body.subject)
    return {"mail": views.mail_view(sent.mail.view()), "delivered_to": sent.delivered_to}


@router.post("/{name}/members", response_model=ChannelAdded, summary="Add members")
async def add_members(name: str, body: Members, runtime: RuntimeDep) -> dict[str, Any]:
    channel = _channel(runtime, name)
    added = await runtime.mailbox.add_members(channel.name, body.members)
    return {**channel_view(channel), "added": added}


@router.delete("/{name}/members/{member}", response_model=ChannelView, summary="Remove a member")
async def remove_member(name: str, member: str, runtime: RuntimeDep) -> dict[str, Any]:
    channel = _channel(runtime, name)
    if not await runtime.mailbox.remove_member(channel.name, member):
        raise NotFound(f"{member!r} is not a member of #{channel.name}")
    return channel_view(channel)


@router.post("/{name}/read", response_model=ReadMark, summary="Mark the channel read for a member")
async def mark_read(name: str, body: MarkRead, runtime: RuntimeDep,
                    caller: CallerDep) -> dict[str, Any]:
    channel = _channel(runtime, name)
    member = body.member or speaking_as(caller, None, "body.member")
    if member.startswith("person:"):
        member = speaking_as(caller, member, "body.member")
    await runtime.mailbox.mark_read(channel.name, member)
    return {"channel": channel.name, "member": member, "unread": 0}
