"""Channels: group conversations of agents and people."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from wakeful.core.mail_records import Channel
from wakeful.runtime.runtime import Runtime
from wakeful.server import views
from wakeful.server.errors import NotFound
from wakeful.server.identity import CallerDep, speaking_as
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


@router.get("", summary="Channels, with unread counts for a member")
async def list_channels(runtime: RuntimeDep, member: str | None = Query(
        None, description="count unread posts for this member ('person:ada')")
        ) -> dict[str, Any]:
    unread = await runtime.mailbox.unread(member) if member else {}
    return {"channels": [{**channel_view(c), "unread": unread.get(c.name)}
                         for c in sorted(runtime.mailbox.channels(), key=lambda c: c.name)]}


@router.post("", status_code=201, summary="Create a channel (its creator joins it)")
async def create_channel(body: NewChannel, runtime: RuntimeDep,
                         caller: CallerDep) -> dict[str, Any]:
    creator = speaking_as(caller, body.created_by, "body.created_by")
    members = [*body.members, creator]
    channel = await runtime.mailbox.create_channel(body.name, members, topic=body.topic,
                                                   created_by=creator)
    return channel_view(channel)


@router.get("/{name}", summary="One channel")
async def get_channel(name: str, runtime: RuntimeDep) -> dict[str, Any]:
    return channel_view(_channel(runtime, name))


@router.get("/{name}/posts", summary="Posts, oldest first")
async def posts(name: str, runtime: RuntimeDep, limit: Limit = 100,
                before_seq: int | None = None) -> dict[str, Any]:
    channel = _channel(runtime, name)
    found = await runtime.mailbox.history(None, channel.name, limit=limit,
                                          before_seq=before_seq)
    return {"channel": channel.name, "posts": [views.mail_view(m) for m in found]}


@router.post("/{name}/posts", status_code=201, summary="Post as a person")
async def post(name: str, body: NewPost, runtime: RuntimeDep,
               caller: CallerDep) -> dict[str, Any]:
    channel = _channel(runtime, name)
    sender = speaking_as(caller, body.sender, "body.sender")
    if body.join and sender not in channel.members:
        await runtime.mailbox.add_members(channel.name, [sender])
    sent = await runtime.mailbox.post(sender, channel.name, body.body, body.subject)
    return {"mail": views.mail_view(sent.mail.view()), "delivered_to": sent.delivered_to}


@router.post("/{name}/members", summary="Add members")
async def add_members(name: str, body: Members, runtime: RuntimeDep) -> dict[str, Any]:
    channel = _channel(runtime, name)
    added = await runtime.mailbox.add_members(channel.name, body.members)
    return {**channel_view(channel), "added": added}


@router.delete("/{name}/members/{member}", summary="Remove a member")
async def remove_member(name: str, member: str, runtime: RuntimeDep) -> dict[str, Any]:
    channel = _channel(runtime, name)
    if not await runtime.mailbox.remove_member(channel.name, member):
        raise NotFound(f"{member!r} is not a member of #{channel.name}")
    return channel_view(channel)


@router.post("/{name}/read", summary="Mark the channel read for a member")
async def mark_read(name: str, body: MarkRead, runtime: RuntimeDep,
                    caller: CallerDep) -> dict[str, Any]:
    channel = _channel(runtime, name)
    member = body.member or speaking_as(caller, None, "body.member")
    if member.startswith("person:"):
        member = speaking_as(caller, member, "body.member")
    await runtime.mailbox.mark_read(channel.name, member)
    return {"channel": channel.name, "member": member, "unread": 0}
