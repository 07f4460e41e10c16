"""A process that sends and handles mail until N mails are handled (see the crash test).

Run: ``python tests/mail_crash_worker.py DB N LOG``. It is meant to be killed with
SIGKILL at any moment and started again; each start carries on:

* the producer sends mails ``k0 .. k{N-1}`` with idempotency keys, resuming a little
  before where the store says it stopped (so some sends repeat and must be dropped),
  and appends every send that returned (= committed) to LOG;
* three handlers take mail, apply its effect (add its amount to a total) in the store
  *only if this mail id was not applied before*, then acknowledge it.

It prints READY once it runs and DONE once all N effects are applied.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from wakeful.core.mail_records import Delivery
from wakeful.errors import MailTimeoutError
from wakeful.mailbox import Mailbox
from wakeful.observe.events import EventLog
from wakeful.project.definitions import MailboxConfig
from wakeful.store.sqlite import SQLiteStore
from wakeful.store.sqlite.mail import SQLiteMailStore

HANDLERS = 3
GROUP = 10


def setup(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS effects (mail_id TEXT PRIMARY KEY, "
                 "amount INTEGER NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY, total INTEGER, "
                 "applied INTEGER, handled INTEGER, skipped INTEGER)")
    conn.execute("INSERT OR IGNORE INTO totals VALUES (1, 0, 0, 0, 0)")


async def main(db: Path, n: int, log: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.write(setup)
    mailbox = Mailbox(SQLiteMailStore(store),
                      MailboxConfig(visibility_timeout_s=1.0, max_deliveries=1000),
                      events=EventLog(store), agents=lambda: {"producer", "consumer"})
    await mailbox.open()
    print("READY", flush=True)
    finished = asyncio.Event()

    async def produce() -> None:
        stored = await store.read(lambda c: c.execute(
            "SELECT COUNT(*) FROM mail WHERE sender = 'producer'").fetchone()[0])
        for first in range(max(0, stored - 3 * GROUP), n, GROUP):
            keys = range(first, min(first + GROUP, n))
            sent = await asyncio.gather(*(
                mailbox.send("producer", "consumer", f"m{k}", payload={"amount": k},
                             idempotency_key=f"k{k}") for k in keys))
            with log.open("a") as out:  # only sends that returned, i.e. committed
                out.write("".join(f"k{k} {s.id} {int(s.duplicate)}\n"
                                  for k, s in zip(keys, sent, strict=True)))
            await asyncio.sleep(random.random() * 0.004)

    def apply_effect(delivery: Delivery) -> Callable[[sqlite3.Connection], int]:
        amount = (delivery.mail.payload or {})["amount"]

        def op(conn: sqlite3.Connection) -> int:
            conn.execute("UPDATE totals SET handled = handled + 1")
            fresh = conn.execute("INSERT INTO effects VALUES (?, ?) ON CONFLICT DO NOTHING",
                                 (delivery.mail.id, amount)).rowcount == 1
            if fresh:  # idempotent on the mail id: a redelivered mail changes nothing
                conn.execute("UPDATE totals SET total = total + ?, applied = applied + 1",
                             (amount,))
            else:
                conn.execute("UPDATE totals SET skipped = skipped + 1")
            applied: int = conn.execute("SELECT applied FROM totals").fetchone()[0]
            return applied

        return op

    async def handle() -> None:
        # Until every effect is applied *and* no mail is left: a redelivered copy of an
        # applied mail must still be taken and acknowledged before the worker says DONE.
        while True:
            try:
                delivery = await mailbox.receive("consumer", timeout=0.05)
            except MailTimeoutError:
                if finished.is_set():
                    return
                continue
            await asyncio.sleep(random.random() * 0.003)  # the handler's work
            applied: int = await store.write(apply_effect(delivery))
            await asyncio.sleep(random.random() * 0.002)  # a kill here: applied, not acked
            await mailbox.ack(delivery)
            if applied >= n:
                finished.set()

    already = await store.read(lambda c: c.execute("SELECT applied FROM totals").fetchone()[0])
    if already >= n:
        finished.set()
    workers = [asyncio.create_task(produce()),
               *(asyncio.create_task(handle()) for _ in range(HANDLERS))]
    await finished.wait()
    await asyncio.gather(*workers)  # the producer's sends, and the handlers' last acks
    await mailbox.close()
    await store.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
