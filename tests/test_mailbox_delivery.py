"""The mailbox's delivery guarantees, against a real store (SQLite and PostgreSQL).

Order, ack and redelivery, idempotent sends, dead letters and retry, durability across
a reopen, wake-on-mail without polling, cancellation, and mail written by another
process (the CLI) being picked up by a running mailbox.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mail_fixtures import AGENTS, OpenMailbox, stored
from wakeful.errors import MailError, MailTimeoutError
from wakeful.mailbox import Mailbox, MailFilter, MemoryMailStore


async def test_per_sender_order_is_kept_and_a_redelivered_mail_keeps_its_place(
        open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox()
    await asyncio.gather(
        *(mailbox.send("alice", "bob", f"a{i}") for i in range(30)),
        *(mailbox.send("carol", "bob", f"c{i}") for i in range(30)))
    got = []
    while batch := mailbox.claim("bob", limit=7):
        got.extend(batch)
    subjects = [d.mail.subject for d in got]
    assert [s for s in subjects if s[0] == "a"] == [f"a{i}" for i in range(30)]
    assert [s for s in subjects if s[0] == "c"] == [f"c{i}" for i in range(30)]
    # The handler of a2 gives it back: it comes out again before anything later.
    for delivery in got:
        if delivery.mail.subject != "a2":
            await mailbox.ack(delivery)
    mailbox.nack(next(d for d in got if d.mail.subject == "a2"), "handler failed")
    await mailbox.send("alice", "bob", "a30")
    again = mailbox.claim("bob", limit=5)
    assert [d.mail.subject for d in again] == ["a2", "a30"]
    assert again[0].attempts == 2 and again[0].last_error == "handler failed"


async def test_a_crashed_handler_s_mail_is_delivered_again_after_the_visibility_timeout(
        open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox(visibility_timeout_s=0.2)
    sent = await mailbox.send("alice", "bob", "job", "do it")

    async def crashing_handler() -> None:
        delivery = await mailbox.receive("bob", timeout=5)
        assert delivery.mail.id == sent.id
        raise RuntimeError("handler crashed before ack")

    with pytest.raises(RuntimeError):
        await crashing_handler()
    assert mailbox.claim("bob") == []  # still leased to the crashed handler
    started = time.monotonic()
    again = await mailbox.receive("bob", timeout=5)
    assert again.mail.id == sent.id and again.attempts == 2
    assert time.monotonic() - started > 0.1  # not before the visibility timeout
    assert await mailbox.ack(again) is True
    assert await mailbox.ack(again) is False  # acknowledged once only
    await asyncio.sleep(0.4)  # well past the timeout: an acked mail never comes back
    assert mailbox.claim("bob") == []
    assert await stored(mailbox, "SELECT status, attempts FROM mail_deliveries") == [
        ("acked", 2)]


async def test_a_repeated_send_with_the_same_idempotency_key_is_dropped(
        open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox()
    first = await mailbox.send("alice", "bob", "invoice 7", idempotency_key="inv-7")
    again = await mailbox.send("alice", "bob", "invoice 7 (resent)", idempotency_key="inv-7")
    other = await mailbox.send("carol", "bob", "invoice 7", idempotency_key="inv-7")
    assert not first.duplicate and again.duplicate and not other.duplicate
    assert again.id == first.id and again.mail.subject == "invoice 7"
    assert [d.mail.id for d in mailbox.claim("bob")] == [first.id, other.id]
    # The key outlives the process: a sender restarted after a crash resends safely.
    later = await open_mailbox()
    assert (await later.send("alice", "bob", "x", idempotency_key="inv-7")).duplicate
    assert await stored(later, "SELECT COUNT(*) FROM mail") == [(2,)]


async def test_mail_failing_max_deliveries_times_is_dead_lettered_and_can_be_retried(
        open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox(visibility_timeout_s=0.1, max_deliveries=3)
    sent = await mailbox.send("alice", "bob", "poison")
    for attempt in range(1, 4):
        delivery = await mailbox.receive("bob", timeout=5)
        assert delivery.attempts == attempt  # never acknowledged: its lease runs out
    with pytest.raises(MailTimeoutError):
        await mailbox.receive("bob", timeout=0.4)
    [dead] = await mailbox.dead_letters()
    assert dead.id == sent.id and dead.status == "dead" and dead.attempts == 3
    assert "not acknowledged within 0.1s" in (dead.last_error or "")
    assert "gave up after 3 deliveries" in (dead.last_error or "")
    with pytest.raises(MailError, match="dead-letter box"):
        await mailbox.ack(delivery)

    assert await mailbox.retry(sent.id) == 1
    retried = await mailbox.receive("bob", timeout=5)
    assert retried.mail.id == sent.id and retried.attempts == 1
    await mailbox.ack(retried)
    assert await mailbox.dead_letters() == []
    with pytest.raises(MailError, match="not in a dead-letter box"):
        await mailbox.retry(sent.id)
    events = [t for (t,) in await stored(mailbox, "SELECT type FROM events")]
    assert events.count("mail.dead_lettered") == 1 and events.count("mail.retried") == 1


async def test_explicit_nacks_also_end_in_the_dead_letter_box(open_mailbox: OpenMailbox
                                                              ) -> None:
    mailbox = await open_mailbox(max_deliveries=2)
    await mailbox.send("alice", "bob", "bad input")
    for _ in range(2):
        mailbox.nack(await mailbox.receive("bob", timeout=5), "cannot parse it")
    [dead] = await mailbox.dead_letters(owner="bob")
    assert dead.last_error == "cannot parse it; gave up after 2 deliveries"


async def test_mail_survives_a_reopen_and_an_unacked_delivery_comes_back_at_once(
        open_mailbox: OpenMailbox) -> None:
    first = await open_mailbox(visibility_timeout_s=60)
    await first.send("alice", "bob", "one")
    await first.send("alice", "bob", "two")
    taken = await first.receive("bob", timeout=5)  # taken, never acked: its reader "dies"
    assert taken.mail.subject == "one"
    await first.close()

    second = await open_mailbox(visibility_timeout_s=60)
    got = second.claim("bob")
    assert [(d.mail.subject, d.attempts) for d in got] == [("one", 2), ("two", 1)]


async def test_a_waiting_reader_wakes_on_matching_mail_without_reading_the_store(
        open_mailbox: OpenMailbox) -> None:
    # Only mail from other processes is looked for in the store (every poll_interval_s);
    # make that never happen here, so any read would be a reader polling for its mail.
    mailbox = await open_mailbox(poll_interval_s=3600)
    store = mailbox.store.store  # type: ignore[attr-defined]
    reads = 0

    def counting(real: Any) -> Any:
        async def read(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return await real(*args)
        return read

    store.read = counting(store.read)
    if hasattr(store, "fetch"):  # PostgreSQL reads through fetch too
        store.fetch = counting(store.fetch)
    wanted = MailFilter.of(sender="carol", payload={"order.id": 7})
    woke: list[float] = []

    async def reader() -> None:
        delivery = await mailbox.receive("bob", wanted, timeout=10)
        woke.append(time.perf_counter())
        assert delivery.mail.payload == {"order": {"id": 7}}

    waiting = asyncio.create_task(reader())
    await asyncio.sleep(0.3)  # a reader polling the store would read it here
    await mailbox.send("alice", "bob", "not this: wrong sender", payload={"order": {"id": 7}})
    await mailbox.send("carol", "bob", "not this: wrong order", payload={"order": {"id": 8}})
    sent_at = time.perf_counter()
    await mailbox.send("carol", "bob", "this one", payload={"order": {"id": 7}})
    await asyncio.wait_for(waiting, 5)
    assert woke[0] - sent_at < 0.5  # generous: it proves a wake-up, not a speed
    assert reads == 0
    assert [d.mail.subject for d in mailbox.claim("bob")] == [
        "not this: wrong sender", "not this: wrong order"]


async def test_a_cancelled_wait_gives_back_mail_handed_to_it_and_close_cancels_waits() -> None:
    mailbox = Mailbox(MemoryMailStore(), agents=lambda: AGENTS)
    await mailbox.open()
    waiting = asyncio.create_task(mailbox.receive("bob"))
    await asyncio.sleep(0)
    await mailbox.send("alice", "bob", "racing the cancel")  # in memory: handed over at once
    waiting.cancel()  # ... but the reader is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiting
    [back] = mailbox.claim("bob")
    assert back.mail.subject == "racing the cancel" and back.attempts == 1

    stuck = asyncio.create_task(mailbox.receive("carol"))
    await asyncio.sleep(0)
    await mailbox.close()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    assert mailbox.stats()["waiters"] == 0


async def test_mail_written_by_another_process_reaches_a_waiting_reader(
        open_mailbox: OpenMailbox) -> None:
    runtime_side = await open_mailbox()
    cli_side = await open_mailbox(live=False)  # what `wakeful mail send` opens
    waiting = asyncio.create_task(runtime_side.receive("bob", timeout=10))
    await asyncio.sleep(0.1)
    sent = await cli_side.send("person:ada", "bob", "from the command line")
    delivery = await asyncio.wait_for(waiting, 10)
    assert delivery.mail.id == sent.id and delivery.mail.sender == "person:ada"
    # A dead letter retried from the CLI is picked up the same way.
    runtime_side.nack(delivery, "x")
    for _ in range(4):
        runtime_side.nack(await runtime_side.receive("bob", timeout=5), "x")
    await runtime_side.flush()  # what another process sees is what is committed
    assert await cli_side.retry(sent.id) == 1
    again = await runtime_side.receive("bob", timeout=10)
    assert again.mail.id == sent.id and again.attempts == 1


async def test_bulk_send_commits_in_one_batch(open_mailbox: OpenMailbox) -> None:
    mailbox = await open_mailbox()
    batches = mailbox.stats()["batches"]
    drafts = [mailbox.draft("alice", to="bob", subject=f"s{i}") for i in range(500)]
    sent = await mailbox.send_many("alice", drafts)
    assert len(sent) == 500 and mailbox.stats()["batches"] - batches == 1
    assert [d.mail.subject for d in mailbox.claim("bob", limit=500)] == [
        f"s{i}" for i in range(500)]
