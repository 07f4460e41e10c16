"""The contracts of the store families (mail, locks, timers, A2A), against every backend.

Two stores opened on one database are two workers (two processes sharing one SQLite
file, or two PostgreSQL stores on one schema): what one worker decides, the other must
respect. The tests that need a transaction held open on purpose (a late commit, a fenced
write still running) run on PostgreSQL only: SQLite has one writer at a time, so it has
no such interleaving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from polling import until
from wakeful.core.a2a import A2ATaskRow
from wakeful.core.locks import Acquired, Blocked
from wakeful.core.mail_records import Delivery, DeliveryState, Envelope, NewMail
from wakeful.core.records import Event
from wakeful.core.resources import Mode, Owner, Resource
from wakeful.core.timers import Claim, Timer
from wakeful.errors import StaleTokenError
from wakeful.runtime.agent import new_task_record
from wakeful.store import Store, open_store
from wakeful.store.a2a import a2a_store
from wakeful.store.postgres.mail import apply_changes

Pair = tuple[Store, Store]


@asynccontextmanager
async def two_workers(url: str) -> AsyncIterator[Pair]:
    opened: list[Store] = []
    try:
        for _ in range(2):
            store = open_store(url)
            await store.open()
            opened.append(store)
        yield opened[0], opened[1]
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
async def workers(backend_url: str) -> AsyncIterator[Pair]:
    """Two stores on one database, of each backend: two workers."""
    async with two_workers(backend_url) as pair:
        yield pair


@pytest.fixture
async def pg_workers(pg_url: str) -> AsyncIterator[Pair]:
    """Two PostgreSQL stores on one schema, for interleavings only it has."""
    async with two_workers(pg_url) as pair:
        yield pair


# mail -----------------------------------------------------------------------------
def envelope(sender: str, recipient: str, subject: str, key: str | None = None) -> Envelope:
    return Envelope(id=f"m_{uuid.uuid4().hex[:10]}", sender=sender, recipient=recipient,
                    subject=subject, body="", payload=None, priority=1, thread_id="th",
                    in_reply_to=None, reply_to=sender, correlation_id=None,
                    causation_id=None, idempotency_key=key, created_at=time.time())


def new_mail(sender: str, recipient: str, subject: str, key: str | None = None,
             wakeup: bool = True) -> NewMail:
    mail = envelope(sender, recipient, subject, key)
    return NewMail(mail, [Delivery(mail, recipient)], [Event("mail.sent", data={
        "subject": subject})], wakeup=wakeup)


async def test_a_keyed_send_is_stored_once_even_from_two_workers_at_once(
        workers: Pair) -> None:
    one, two = workers
    first = [new_mail("alice", "bob", f"inv {i}", key="inv-7") for i in range(3)]
    second = [new_mail("alice", "bob", f"inv {i}", key="inv-7") for i in range(3)]
    plain = [new_mail("alice", "bob", f"note {i}") for i in range(50)]
    await asyncio.gather(one.mail().apply([*first, *plain[:25]]),
                         two.mail().apply([*second, *plain[25:]]))
    changes = [*first, *second]
    kept = [c for c in changes if c.duplicate_of is None]
    assert len(kept) == 1  # one of six sends under one key
    assert all(c.duplicate_of is not None and c.duplicate_of.id == kept[0].mail.id
               for c in changes if c is not kept[0])
    found = await two.mail().find_mail("alice", "inv-7")
    assert found is not None and found.id == kept[0].mail.id
    open_ = await one.mail().load_open("bob")
    assert len(open_) == 51
    notes = [int(d.mail.subject.split()[1]) for d in open_ if d.mail.subject[0] == "n"]
    assert [n for n in notes if n < 25] == list(range(25))  # each batch keeps its order
    assert [n for n in notes if n >= 25] == list(range(25, 50))


async def test_a_burst_of_a_thousand_sends_is_a_few_statements(pg_workers: Pair) -> None:
    one, two = pg_workers
    statements: list[str] = []

    class Counting:
        """The connection, counting the statements sent through it."""

        def __init__(self, conn: asyncpg.Connection) -> None:
            self.conn = conn

        def __getattr__(self, name: str) -> Any:
            found = getattr(self.conn, name)
            if name not in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
                return found

            async def counted(*args: Any) -> Any:
                statements.append(str(args[0]).split()[0])
                return await found(*args)
            return counted

    burst = [new_mail("alice", f"r{i % 50}", f"s{i}", key=f"k{i}" if i % 2 else None)
             for i in range(1000)]

    async def op(conn: asyncpg.Connection) -> None:
        await apply_changes(Counting(conn), burst)  # type: ignore[arg-type]

    await one.write(op, ring=("mail",))  # type: ignore[attr-defined]
    assert 4 <= len(statements) <= 6  # mail, keyed mail, deliveries, wakeups, events (2)
    assert len(await two.mail().load_open()) == 1000
    watermark, wakeups = 0, []

    async def all_woken() -> bool:
        nonlocal watermark
        watermark, more = await two.mail().take_wakeups(watermark)
        wakeups.extend(more)
        return len(wakeups) >= 1000

    await until(all_woken, 10, "a wakeup per delivery")


async def test_mail_pages_the_same_forwards_and_backwards(workers: Pair) -> None:
    one, two = workers
    await one.mail().apply([new_mail("alice", "bob", f"m{i}") for i in range(7)])
    await two.mail().apply([new_mail("bob", "alice", f"r{i}") for i in range(3)])
    between = ("alice", "bob")
    everything = await two.mail().list_mail(between=between, limit=100)
    assert len(everything) == 10
    seqs = [m.seq or 0 for m in everything]
    assert seqs == sorted(seqs)
    forwards: list[int] = []
    after = 0
    while page := await one.mail().list_mail(between=between, after_seq=after, limit=3):
        forwards += [m.seq or 0 for m in page]
        after = forwards[-1]
    assert forwards == seqs  # each page the oldest after the last: nothing skipped, in order
    newest = await one.mail().list_mail(between=between, limit=3)
    assert [m.seq for m in newest] == seqs[-3:]
    older = await one.mail().list_mail(between=between, before_seq=seqs[-3], limit=3)
    assert [m.seq for m in older] == seqs[-6:-3]
    only_bob = await one.mail().list_mail(recipient="alice", after_seq=seqs[0], limit=10)
    assert [m.subject for m in only_bob] == ["r0", "r1", "r2"]


async def test_deliveries_page_forwards_to_the_end_by_seq_and_owner(workers: Pair) -> None:
    """A delivery listing pages through every delivery, however many (it used to page
    through the newest 5,000 only): a mail to many mailboxes has one delivery each."""
    one, two = workers
    changes = []
    for i in range(4):
        mail = envelope("alice", "#room", f"post {i}")
        changes.append(NewMail(mail, [Delivery(mail, who) for who in ("bob", "carol", "dan")],
                               [], wakeup=False))
    await one.mail().apply(changes)
    await two.mail().apply([new_mail("alice", "bob", f"direct {i}") for i in range(3)])
    newest = await one.mail().list_deliveries(limit=100)
    assert len(newest) == 15
    every = sorted((d.mail.seq or 0, d.owner) for d in newest)
    walked: list[tuple[int, str]] = []
    after = (0, "")
    while page := await two.mail().list_deliveries(after=after, limit=4):
        walked += [(d.mail.seq or 0, d.owner) for d in page]
        after = walked[-1]
    assert walked == every  # each once, in (seq, owner) order: nothing skipped
    bobs = await one.mail().list_deliveries(owner="bob", after=(0, ""), limit=100)
    assert [d.mail.subject for d in bobs] == [*(f"post {i}" for i in range(4)),
                                              *(f"direct {i}" for i in range(3))]


def question(person: str, n: int) -> NewMail:
    payload = {"question": True, "task_id": f"t_{n}", "agent": "writer"}
    mail = dataclasses.replace(
        envelope(f"writer/t_{n}", person, f"Question {n}"), payload=payload,
        payload_json=json.dumps(payload, separators=(",", ":")), correlation_id=f"c_{n}")
    return NewMail(mail, [Delivery(mail, person)], [], wakeup=False)


async def test_unanswered_questions_are_found_under_any_amount_of_other_mail(
        workers: Pair) -> None:
    """An inbox reads a person's open questions from the store, whatever else they were
    sent (it used to look at their newest 200 mails only), and leaves out the answered."""
    one, two = workers
    asked = [question("person:ada", n) for n in range(3)]
    await one.mail().apply([asked[0], question("person:bob", 9)])
    chatter = [new_mail("writer", "person:ada", f"note {i}") for i in range(260)]
    chatter[0].mail.body = '{"question":true} is only text here'
    await two.mail().apply([*chatter, asked[1], asked[2]])
    answered = asked[1].mail
    reply = dataclasses.replace(envelope("person:ada", answered.sender, "Re"),
                                in_reply_to=answered.id,
                                correlation_id=answered.correlation_id)
    await one.mail().apply([NewMail(reply, [Delivery(reply, answered.sender)], [],
                                    wakeup=False)])
    found = await two.mail().unanswered_questions("person:ada", limit=100)
    assert [m.subject for m in found] == ["Question 0", "Question 2"]
    assert found[0].payload == {"question": True, "task_id": "t_0", "agent": "writer"}
    first = await one.mail().unanswered_questions("person:ada", limit=1)
    rest = await one.mail().unanswered_questions("person:ada", after_seq=first[0].seq or 0)
    assert [m.id for m in first + rest] == [m.id for m in found]
    assert [m.subject for m in await one.mail().unanswered_questions("person:bob")] == [
        "Question 9"]


async def test_an_ack_is_final_whatever_commits_after_it(workers: Pair) -> None:
    one, two = workers
    change = new_mail("alice", "bob", "job")
    await one.mail().apply([change])
    delivery = change.deliveries[0]
    delivery.status, delivery.attempts, delivery.delivered_at = "delivered", 1, time.time()
    leased = DeliveryState(delivery.state_row())
    delivery.status, delivery.acked_at = "acked", time.time()
    acked = DeliveryState(delivery.state_row())
    await two.mail().apply([acked])
    await one.mail().apply([leased])  # an older state, committed late: refused
    await one.mail().apply([acked, leased])  # the same in one batch
    [stored] = await two.mail().deliveries_of(change.mail.id)
    assert stored.status == "acked" and stored.attempts == 1
    assert await one.mail().load_open() == []


async def test_wakeups_are_read_once_each_in_order_across_workers(workers: Pair) -> None:
    one, two = workers
    watermark, _ = await two.mail().take_wakeups(0)
    sent = [new_mail("person:ada", "bob", f"s{i}") for i in range(200)]
    await asyncio.gather(*(one.mail().apply(sent[i:i + 20]) for i in range(0, 200, 20)))
    seen: list[str | None] = []

    async def all_seen() -> bool:
        nonlocal watermark
        watermark, wakeups = await two.mail().take_wakeups(watermark)
        seen.extend(m for _, m, _ in wakeups)
        return len(seen) >= 200

    await until(all_seen, 10, "every wakeup")
    assert sorted(seen, key=str) == sorted((c.mail.id for c in sent), key=str)  # once each


async def test_a_wakeup_that_commits_late_is_never_skipped(pg_workers: Pair,
                                                          pg_url: str) -> None:
    one, two = pg_workers
    watermark, _ = await two.mail().take_wakeups(0)
    late = await asyncpg.connect(pg_url)
    try:
        transaction = late.transaction()
        await transaction.start()
        late_seq = await late.fetchval(
            "INSERT INTO mail_wakeups (kind, mail_id, owner) VALUES ('delivery', 'late', "
            "'bob') RETURNING seq")
        early = new_mail("alice", "bob", "early")
        await one.mail().apply([early])  # begun after the late one, committed first
        seen: list[tuple[int, str | None]] = []
        watermark, wakeups = await two.mail().take_wakeups(watermark)
        seen += [(watermark, m) for _, m, _ in wakeups]
        # The early wakeup is committed but lies beyond a running transaction: a
        # reader that took it would have moved its watermark past the late one.
        assert "late" not in {m for _, m in seen} and watermark < late_seq
        await transaction.commit()
    finally:
        await late.close()

    async def both_seen() -> bool:
        nonlocal watermark
        watermark, wakeups = await two.mail().take_wakeups(watermark)
        seen.extend((watermark, m) for _, m, _ in wakeups)
        return {"late", early.mail.id} <= {m for _, m in seen}

    await until(both_seen, 10, "the late wakeup and the early one")
    order = [m for _, m in seen]
    assert order.index("late") < order.index(early.mail.id)  # in position order
    assert len(order) == len(set(order))  # each once


# locks ----------------------------------------------------------------------------
FILE = "file"


def res(name: str) -> Resource:
    return Resource(FILE, name, True)


async def acquire(store: Store, name: str, task: str, lease_s: float = 60,
                  mode: Mode = Mode.WRITE) -> Any:
    return await store.locks().acquire(res(name), mode, Owner(task, task.split("-")[0]),
                                       process=f"p{id(store)}", pid=1, lease_s=lease_s,
                                       waiter_id=None)


async def test_a_lock_is_granted_to_one_worker_only(workers: Pair) -> None:
    one, two = workers
    results = await asyncio.gather(*(acquire(store, "shared.txt", f"a-{i}{n}")
                                     for i in range(6) for n, store in enumerate((one, two))))
    granted = [r for r in results if hasattr(r, "lock")]
    assert len(granted) == 1
    assert all(r.holders[0].token == granted[0].lock.token
               for r in results if r is not granted[0])


async def test_a_folder_and_a_file_inside_it_are_never_both_granted(workers: Pair) -> None:
    one, two = workers
    for round_ in range(5):
        folder, inside, sibling = await asyncio.gather(
            acquire(one, f"r{round_}", f"a-{round_}f"),
            acquire(two, f"r{round_}/x/y.txt", f"b-{round_}f"),
            acquire(two, f"other{round_}/z.txt", f"c-{round_}f"))
        assert hasattr(folder, "lock") != hasattr(inside, "lock")  # exactly one of them
        assert hasattr(sibling, "lock")  # unrelated: never in the way


async def test_tokens_only_grow_across_workers(workers: Pair) -> None:
    one, two = workers
    tokens = []
    for i in range(6):
        store = (one, two)[i % 2]
        got = await acquire(store, f"t{i}", f"a-{i}")
        tokens.append(got.lock.token)
        await store.locks().release(got.lock.token, got.lock.owner)
    assert tokens == sorted(set(tokens))
    assert await one.locks().last_token() == tokens[-1]


async def test_a_place_in_line_comes_before_later_requests_of_other_workers(
        workers: Pair) -> None:
    one, two = workers
    held = await acquire(one, "q.txt", "a-1")
    renewed = await two.locks().renew(held.lock.token, held.lock.owner, 120)
    assert renewed.expires_at > held.lock.expires_at and renewed.token == held.lock.token
    place = await two.locks().join_line(res("q.txt"), Mode.WRITE, Owner("b-1", "b"),
                                        kind="lock", process="p2", pid=2, keep_alive_s=60)
    await one.locks().release(held.lock.token, held.lock.owner)
    later = await one.locks().acquire(res("q.txt"), Mode.WRITE, Owner("c-1", "c"),
                                      process="p3", pid=3, lease_s=60, waiter_id=None)
    assert isinstance(later, Blocked) and [w.id for w in later.queued] == [place]
    first = await two.locks().acquire(res("q.txt"), Mode.WRITE, Owner("b-1", "b"),
                                      process="p2", pid=2, lease_s=60, waiter_id=place)
    assert isinstance(first, Acquired) and first.lock.token > held.lock.token
    _, locks, waiters = await one.locks().snapshot()
    assert [lock.token for lock in locks] == [first.lock.token] and waiters == []
    assert await one.locks().grants_of("b-1") == [("file:q.txt", first.lock.token)]
    assert [lock.token for lock in await one.locks().release_all("b-1")] == [
        first.lock.token]
    assert await two.locks().grants_of("b-1") == []
    with pytest.raises(StaleTokenError, match="cannot renew"):
        await two.locks().renew(first.lock.token, first.lock.owner, 60)


async def lapse(store: Store, expires_at: float) -> None:
    async def lapsed() -> bool:
        return await store.locks().now() > expires_at

    await until(lapsed, 10, "the lease to lapse (by the store's clock)")


async def test_fenced_writes_are_refused_once_the_lease_lapsed(workers: Pair) -> None:
    one, two = workers
    got = await acquire(one, "kv:shared", "a-1", lease_s=0.3)
    token = got.lock.token
    entry = await one.locks().kv_set("shared", {"v": 1}, "a/a-1", fence=(token, "a-1"))
    assert entry.version == 1
    with pytest.raises(StaleTokenError, match="belongs to another task"):
        await two.locks().kv_set("shared", {"v": 9}, "b/b-1", fence=(token, "b-1"))
    written: list[str] = []
    assert await two.locks().fenced(token, "a-1", lambda: written.append("ok") or 1,
                                    "file:x") == 1
    await lapse(two, got.lock.expires_at)
    with pytest.raises(StaleTokenError, match="lease expired"):
        await two.locks().kv_set("shared", {"v": 2}, "a/a-1", fence=(token, "a-1"))
    with pytest.raises(StaleTokenError, match="lease expired"):
        await one.locks().fenced(token, "a-1", lambda: written.append("late"), "file:x")
    assert written == ["ok"]
    kept = await two.locks().kv_get("shared")
    assert kept is not None and kept.value == {"v": 1} and kept.version == 1
    # A successor gets a larger token, and the old one stays refused.
    successor = await acquire(two, "kv:shared", "b-2")
    assert successor.lock.token > token and [e.token for e in successor.expired] == [token]


async def test_no_successor_is_granted_while_a_fenced_write_runs(pg_workers: Pair,
                                                                pg_url: str) -> None:
    one, two = pg_workers
    got = await acquire(one, "slow.txt", "a-1", lease_s=0.3)
    inside, finish = threading.Event(), threading.Event()
    order: list[str] = []

    def slow_write() -> str:
        inside.set()
        finish.wait(30)
        order.append("write done")
        return "written"

    writing = asyncio.create_task(one.locks().fenced(got.lock.token, "a-1", slow_write,
                                                     "file:slow.txt"))
    await asyncio.to_thread(inside.wait, 30)
    await lapse(two, got.lock.expires_at)  # the lease lapses mid-write

    async def grant() -> None:
        await acquire(two, "slow.txt", "b-1")
        order.append("successor granted")

    granting = asyncio.create_task(grant())
    admin = await asyncpg.connect(pg_url)
    try:
        async def successor_waits() -> bool:
            return bool(await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND query LIKE 'DELETE FROM "
                "resource_locks%'"))

        await until(successor_waits, 10, "the successor's grant to wait for the write")
    finally:
        await admin.close()
    finish.set()
    assert await writing == "written"
    await asyncio.wait_for(granting, 10)
    assert order == ["write done", "successor granted"]


# timers ---------------------------------------------------------------------------
def timer(due: float) -> Timer:
    return Timer(id=f"tm_{uuid.uuid4().hex[:8]}", key=None, kind="at", spec="x",
                 timezone="UTC", anchor=0.0, action="start_task", agent="a", task_id=None,
                 instruction="report", purpose="", misfire="once", max_runs=None,
                 state="active", next_due=due, last_fired=None, fired=0,
                 created_at=due - 60, created_by="test", conditions=None, outcome=None,
                 ended_at=None)


def claim(found: Timer, worker: str) -> Claim:
    assert found.next_due is not None
    return Claim(found, found.next_due, None, found.next_due + 0.5, 1,
                 tasks=[new_task_record("a", f"report from {worker}")],
                 events=[Event("timer.fired", agent="a", data={"by": worker})])


async def test_a_due_timer_fires_once_when_two_workers_race_for_it(workers: Pair) -> None:
    one, two = workers
    due = [timer(1_700_000_000.0 + i) for i in range(10)]
    for made in due:
        await one.timers().insert(made)
    claims = [claim(t, name) for t in due for name in ("one", "two")]
    results = await asyncio.gather(*(
        (one if c.events[0].data["by"] == "one" else two).timers().claim_firings([c])
        for c in claims))
    assert sorted(won for [won] in results) == [False] * 10 + [True] * 10
    tasks = await two.list_tasks(agent="a")
    assert len(tasks) == 10
    fired: list[Event] = []

    async def logged() -> bool:  # read positions are commit-ordered: maybe not yet
        fired[:] = await two.query_events(types=["timer.fired"])
        return len(fired) >= 10

    await until(logged, 10, "the firings' events")
    won = {c.events[0].id for c in claims if c.events[0].id is not None}
    assert len(won) == 10 and {e.id for e in fired} == won  # the winners' events only
    for made in due:
        stored = await two.timers().get(made.id)
        assert stored is not None and stored.state == "done" and stored.fired == 1


async def test_a_timer_key_is_inserted_once(workers: Pair) -> None:
    one, two = workers
    made = [timer(1_700_000_000.0) for _ in range(4)]
    for t in made:
        t.key = "schedule:a:daily"
    kept = await asyncio.gather(*(store.timers().insert(t)
                                  for t, store in zip(made, (one, two, one, two),
                                                      strict=True)))
    assert len({t.id for t in kept}) == 1
    assert [t.id for t in await one.timers().active()] == [kept[0].id]
    assert await two.timers().cancel(kept[0].id, time.time(), "stop") is True
    assert await one.timers().cancel(kept[0].id, time.time(), "stop") is False


# A2A ------------------------------------------------------------------------------
async def test_an_a2a_task_and_its_push_configs_round_trip(workers: Pair) -> None:
    one, two = workers
    task = new_task_record("a", "hello")
    row = A2ATaskRow(task.id, "a", "ctx", "msg-1", {"k": "v"}, [{"role": "user"}],
                     time.time())
    await a2a_store(one).create(row, task)
    await a2a_store(one).append_history(task.id, {"role": "agent"})
    found = await a2a_store(two).get(task.id)
    assert found is not None and found.history == [{"role": "user"}, {"role": "agent"}]
    assert (await two.get_task(task.id)) is not None  # in one transaction with the row
    assert [r.task_id for r in await a2a_store(two).for_agent("a", "ctx")] == [task.id]
    await a2a_store(one).save_push(task.id, "p1", {"url": "http://x"})
    assert await a2a_store(two).undelivered_pushes() == [(task.id, "p1")]
    await a2a_store(two).mark_pushed(task.id, "p1", "queued")
    assert await a2a_store(one).pushes(task.id) == [("p1", {"url": "http://x"}, "queued")]
    assert await a2a_store(one).undelivered_pushes() == []
    assert await a2a_store(two).delete_push(task.id, "p1") is True
    assert await a2a_store(two).delete_push(task.id, "p1") is False


async def test_a_cycle_of_lock_waits_across_workers_is_found_in_the_store(
        workers: Pair) -> None:
    one, two = workers
    assert isinstance(await acquire(one, "x.txt", "a-1"), Acquired)
    assert isinstance(await acquire(two, "dir/y.txt", "b-1"), Acquired)
    await one.locks().join_line(res("dir"), Mode.WRITE, Owner("a-1", "a"), kind="lock",
                                process="p1", pid=1, keep_alive_s=60)
    assert await one.locks().wait_cycle("a-1") == []  # a waits for b; b waits for nobody
    await two.locks().join_line(res("x.txt"), Mode.READ, Owner("b-1", "b"), kind="lock",
                                process="p2", pid=2, keep_alive_s=60)
    assert sorted(await one.locks().wait_cycle("b-1")) == ["a-1", "b-1"]
    assert sorted(await two.locks().wait_cycle("a-1")) == ["a-1", "b-1"]
    assert await two.locks().wait_cycle("c-1") == []
    # two readers never wait for each other: no edge, no cycle
    assert isinstance(await acquire(one, "r.txt", "c-1", mode=Mode.READ), Acquired)
    await two.locks().join_line(res("r.txt"), Mode.READ, Owner("d-1", "d"), kind="lock",
                                process="p2", pid=2, keep_alive_s=60)
    assert await two.locks().wait_cycle("d-1") == []
