"""A process that sends and handles mail until N mails are handled (see the crash test).

Run: ``python tests/mail_crash_worker.py STORE N LOG``, STORE a SQLite file or a
``postgresql://...?search_path=SCHEMA`` URL. It is meant to be killed with SIGKILL at
any moment and started again; each start carries on:

* the producer sends mails ``k0 .. k{N-1}`` with idempotency keys, resuming a little
  before where the store says it stopped (so some sends repeat and must be dropped),
  and appends every send that returned (= committed) to LOG;
* six handlers take mail, apply its effect (add its amount to a total) in tables of
  their own in the store, through the store's own write path (one of its
  transactions), *only if this mail id was not applied before*, then acknowledge it.

It prints READY once it runs and DONE once all N effects are applied.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
from pathlib import Path

import asyncpg

from wakeful.core.mail_records import Delivery
from wakeful.errors import MailTimeoutError
from wakeful.mailbox import Mailbox
from wakeful.observe.events import EventLog
from wakeful.project.definitions import MailboxConfig
from wakeful.store import Store, open_store
from wakeful.store.sqlite import SQLiteStore

HANDLERS = 6  # enough at once that PostgreSQL's group commits are shared
GROUP = 10


class SQLiteEffects:
    """The handlers' tables and effect in the SQLite store (sync ops on its writer)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def setup(self) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS effects (mail_id TEXT PRIMARY KEY, "
                         "amount INTEGER NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY, "
                         "total INTEGER, applied INTEGER, handled INTEGER, skipped INTEGER)")
            conn.execute("INSERT OR IGNORE INTO totals VALUES (1, 0, 0, 0, 0)")

        await self.store.write(op)

    async def scalar(self, sql: str) -> int:
        value: int = await self.store.read(lambda c: c.execute(sql).fetchone()[0])
        return value

    async def apply(self, mail_id: str, amount: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            conn.execute("UPDATE totals SET handled = handled + 1")
            fresh = conn.execute("INSERT INTO effects VALUES (?, ?) ON CONFLICT DO NOTHING",
                                 (mail_id, amount)).rowcount == 1
            if fresh:  # idempotent on the mail id: a redelivered mail changes nothing
                conn.execute("UPDATE totals SET total = total + ?, applied = applied + 1",
                             (amount,))
            else:
                conn.execute("UPDATE totals SET skipped = skipped + 1")
            applied: int = conn.execute("SELECT applied FROM totals").fetchone()[0]
            return applied

        result: int = await self.store.write(op)
        return result


class PgEffects:
    """The same on PostgreSQL: async ops on the store's writer connection, committed in
    its group commit (the op may be replayed whole after a rollback, so it only works
    through SQL)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def setup(self) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("CREATE TABLE IF NOT EXISTS effects (mail_id TEXT PRIMARY KEY, "
                               "amount BIGINT NOT NULL)")
            await conn.execute("CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY, "
                               "total BIGINT, applied INTEGER, handled INTEGER, "
                               "skipped INTEGER)")
            await conn.execute("INSERT INTO totals VALUES (1, 0, 0, 0, 0) "
                               "ON CONFLICT DO NOTHING")

        await self.store.write(op)

    async def scalar(self, sql: str) -> int:
        async def query(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval(sql))

        value: int = await self.store.read(query)
        return value

    async def apply(self, mail_id: str, amount: int) -> int:
        async def op(conn: asyncpg.Connection) -> int:
            await conn.execute("UPDATE totals SET handled = handled + 1")
            fresh = await conn.execute("INSERT INTO effects VALUES ($1, $2) "
                                       "ON CONFLICT DO NOTHING", mail_id, amount) == "INSERT 0 1"
            if fresh:  # idempotent on the mail id: a redelivered mail changes nothing
                await conn.execute("UPDATE totals SET total = total + $1, "
                                   "applied = applied + 1", amount)
            else:
                await conn.execute("UPDATE totals SET skipped = skipped + 1")
            return int(await conn.fetchval("SELECT applied FROM totals"))

        result: int = await self.store.write(op)
        return result


async def main(where: str, n: int, log: Path) -> None:
    store = open_store(where)
    await store.open()
    effects: SQLiteEffects | PgEffects = (
        SQLiteEffects(store) if isinstance(store, SQLiteStore) else PgEffects(store))
    await effects.setup()
    mailbox = Mailbox(store.mail(),
                      MailboxConfig(visibility_timeout_s=1.0, max_deliveries=1000),
                      events=EventLog(store), agents=lambda: {"producer", "consumer"})
    await mailbox.open()
    print("READY", flush=True)
    finished = asyncio.Event()

    async def produce() -> None:
        stored = await effects.scalar("SELECT COUNT(*) FROM mail WHERE sender = 'producer'")
        for first in range(max(0, stored - 3 * GROUP), n, GROUP):
            keys = range(first, min(first + GROUP, n))
            sent = await asyncio.gather(*(
                mailbox.send("producer", "consumer", f"m{k}", payload={"amount": k},
                             idempotency_key=f"k{k}") for k in keys))
            with log.open("a") as out:  # only sends that returned, i.e. committed
                out.write("".join(f"k{k} {s.id} {int(s.duplicate)}\n"
                                  for k, s in zip(keys, sent, strict=True)))
            await asyncio.sleep(random.random() * 0.004)

    async def handle() -> None:
        # Until every effect is applied *and* no mail is left: a redelivered copy of an
        # applied mail must still be taken and acknowledged before the worker says DONE.
        while True:
            try:
                delivery: Delivery = await mailbox.receive("consumer", timeout=0.05)
            except MailTimeoutError:
                if finished.is_set():
                    return
                continue
            await asyncio.sleep(random.random() * 0.003)  # the handler's work
            applied: int = await effects.apply(delivery.mail.id,
                                               (delivery.mail.payload or {})["amount"])
            await asyncio.sleep(random.random() * 0.002)  # a kill here: applied, not acked
            await mailbox.ack(delivery)
            if applied >= n:
                finished.set()

    if await effects.scalar("SELECT applied FROM totals") >= n:
        finished.set()
    workers = [asyncio.create_task(produce()),
               *(asyncio.create_task(handle()) for _ in range(HANDLERS))]
    await finished.wait()
    await asyncio.gather(*workers)  # the producer's sends, and the handlers' last acks
    await mailbox.close()
    await store.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
