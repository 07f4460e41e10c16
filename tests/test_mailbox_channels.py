"""Channels, request/reply, access rules and bad mail, against a real store (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from mail_fixtures import OpenMailbox, stored
from wakeful.errors import (
    MailAccessError,
    MailError,
    MailTimeoutError,
    MailTooLargeError,
    UnknownAgentError,
)
from wakeful.mailbox import MailFilter


async def test_a_post_reaches_every_other_member_and_each_has_its_own_cursor(
        open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox()
    await mailbox.create_channel("team", ["alice", "bob", "carol", "person:ada"])
    for i in range(3):
        sent = await mailbox.post("alice/t_1", "team", f"update {i}")
        assert sent.delivered_to == 2  # bob and carol; not the sender, not people
    await mailbox.post("person:ada", "team", "thanks!")
    assert mailbox.claim("alice") != []  # alice gets ada's post only
    bob = mailbox.claim("bob")
    assert [d.mail.body for d in bob] == ["update 0", "update 1", "update 2", "thanks!"]
    assert all(d.channel == "team" for d in bob)

    assert await mailbox.unread("person:ada") == {"team": 3}  # her own post is not unread
    assert await mailbox.unread("bob") == {"team": 4}
    await mailbox.ack(bob[1])  # bob handled "update 1": his cursor is past it
    assert await mailbox.unread("bob") == {"team": 2}
    assert await mailbox.unread("carol") == {"team": 4}  # untouched by bob's reading
    await mailbox.mark_read("team", "person:ada")
    assert await mailbox.unread("person:ada") == {"team": 0}

    history = await mailbox.history("carol", "team")
    assert [p.body for p in history] == ["update 0", "update 1", "update 2", "thanks!"]
    assert {p.recipient for p in history} == {"#team"}

    assert len(mailbox.claim("carol")) == 4
    assert await mailbox.remove_member("team", "carol")
    await mailbox.post("bob", "team", "without carol")
    assert mailbox.claim("carol") == []
    assert await mailbox.add_members("team", ["carol", "bob"]) == ["carol"]


async def test_broadcast_reaches_every_agent_but_the_sender(open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox()
    sent = await mailbox.send("carol/t_9", "*", "all hands")
    assert sent.delivered_to == 2
    assert [len(mailbox.claim(a)) for a in ("alice", "bob", "carol")] == [1, 1, 0]


async def test_request_waits_for_its_reply_and_times_out_without_one(
        open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox()

    async def bob_answers() -> None:
        question = await mailbox.receive("bob", MailFilter.of(subject="price"), timeout=10)
        await mailbox.send("bob", "alice/t_1", "noise: same task, no correlation")
        await mailbox.reply("bob/t_2", question.mail, "42 EUR", payload={"eur": 42})
        await mailbox.ack(question)

    answering = asyncio.create_task(bob_answers())
    reply = await mailbox.request("alice/t_1", "bob", "price?", "how much?", timeout=10)
    await answering
    assert reply.mail.body == "42 EUR" and reply.mail.payload == {"eur": 42}
    assert reply.owner == "alice/t_1" and reply.status == "acked"
    assert reply.mail.subject == "Re: price?" and reply.mail.sender == "bob/t_2"
    [noise] = mailbox.claim("alice/t_1")
    assert noise.mail.subject.startswith("noise")
    # The 1-1 conversation of the two agents includes their tasks' mail, both ways.
    talk = await mailbox.conversation("alice", "bob")
    assert [(m.sender, m.recipient, m.subject) for m in talk] == [
        ("alice/t_1", "bob", "price?"), ("bob", "alice/t_1", "noise: same task, no correlation"),
        ("bob/t_2", "alice/t_1", "Re: price?")]

    started = time.monotonic()
    with pytest.raises(MailTimeoutError, match=r"no reply from carol .* within 0.3s"):
        await mailbox.request("alice/t_1", "carol", "anyone there?", timeout=0.3)
    assert time.monotonic() - started > 0.25  # it waited (no upper bound: a busy machine)
    # The question is still there for carol; a late answer lands in alice's task mailbox.
    [late] = mailbox.claim("carol")
    await mailbox.reply("carol", late.mail, "sorry, late")
    assert [d.mail.body for d in mailbox.claim("alice/t_1")] == ["sorry, late"]


async def test_readers_see_only_their_mail_and_channels_and_refusals_are_recorded(
        open_mailbox: OpenMailbox, tmp_path: Path) -> None:
    mailbox = await open_mailbox()
    to_bob = await mailbox.send("alice", "bob", body="private")
    to_task = await mailbox.send("alice", "carol/t_1", body="for task 1 only")
    await mailbox.create_channel("ops", ["alice", "bob"])
    post = await mailbox.post("alice", "ops", "ops only")

    assert (await mailbox.read("bob/t_5", to_bob.id)).body == "private"  # agent's mailbox
    assert (await mailbox.read("alice/t_3", to_bob.id)).body == "private"  # its own mail
    assert (await mailbox.read("carol/t_1", to_task.id)).body == "for task 1 only"
    attempts = [
        mailbox.read("carol", to_bob.id),  # someone else's mail
        mailbox.read("carol/t_2", to_task.id),  # a sibling task's mailbox
        mailbox.read("carol", post.id),  # a channel it is not in
        mailbox.history("carol/t_1", "ops"),
        mailbox.post("carol", "ops", "let me in"),
        mailbox.ack_id("carol", to_bob.id),
    ]
    for attempt in attempts:
        with pytest.raises(MailAccessError, match="this was refused and recorded"):
            await attempt
    assert mailbox.denied == 6
    denied = [(agent, json.loads(data)["action"]) for agent, data in await stored(
        mailbox, "SELECT agent, data FROM events WHERE type = 'mail.access_denied' "
        "ORDER BY id")]
    assert [a for a, _ in denied] == ["carol"] * 6
    assert denied[3][1] == "read #ops"
    # Nothing of it leaked into carol's mailbox, and the mailbox still works.
    assert mailbox.claim("carol") == []
    assert (await mailbox.send("carol", "bob", "still working")).delivered_to == 1


async def test_oversized_and_malformed_mail_is_refused_with_what_was_wrong(
        open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox(max_body_chars=100, max_payload_bytes=64,
                                 max_subject_chars=10)
    too_big = [
        (dict(body="x" * 101), "the body is 101 characters; the limit is 100 "
                               r"\(mailbox.max_body_chars\)"),
        (dict(subject="y" * 11), r"the subject is 11 characters; the limit is 10"),
        (dict(payload={"blob": "z" * 80}), r"the payload is 91 bytes of JSON; the limit is 64"),
    ]
    for fields, message in too_big:
        with pytest.raises(MailTooLargeError, match=message):
            await mailbox.send("alice", "bob", **fields)
    malformed = [
        (dict(to="Bob!"), MailError, r"field 'to': 'Bob!' is not a valid address"),
        (dict(to="#No Spaces"), MailError, "is not a valid channel"),
        (dict(to="bob", priority="asap"), MailError, "field 'priority'"),
        (dict(to="bob", payload=[1, 2]), MailError, "field 'payload'"),
        (dict(to="bob", colour="red"), MailError, "field 'colour': Extra inputs"),
        (dict(to="bob"), MailError, "is empty: give it a subject, a body or a payload"),
        (dict(to="dave", body="hi"), UnknownAgentError, "unknown agent 'dave'"),
        (dict(to="#nowhere", body="hi"), MailError, "unknown channel '#nowhere'"),
    ]
    for fields, error, message in malformed:
        with pytest.raises(error, match=message):
            await mailbox.send("alice", **fields)  # type: ignore[arg-type]
    with pytest.raises(MailError, match="cannot send mail"):
        await mailbox.send("#ops", "bob", "hi")
    with pytest.raises(MailError, match="no mail with id 'm_nope'"):
        await mailbox.read("bob", "m_nope")
    assert mailbox.claim("bob") == []  # nothing half-sent
    assert (await mailbox.send("alice", "bob", "fits")).delivered_to == 1
