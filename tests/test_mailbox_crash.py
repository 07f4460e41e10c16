"""A process sending and handling mail is killed with SIGKILL again and again, on each
backend.

After it finally runs to the end, every mail whose send returned was delivered and
handled exactly once in effect: none lost, none applied twice, none stored twice.
"""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from crash_store import CrashStore, crash_store

__all__ = ["crash_store"]

WORKER = Path(__file__).with_name("mail_crash_worker.py")
MAILS = 3000
KILLS = 4


def start(store: CrashStore, log: Path) -> subprocess.Popen[str]:
    # stderr goes to a file: a pipe nobody drains during the kill rounds could fill up
    # and block the worker.
    where = store.url or str(store.root / "wakeful.db")
    with (log.parent / "worker.err").open("a") as errors:  # the child keeps its own copy
        return subprocess.Popen([sys.executable, str(WORKER), where, str(MAILS), str(log)],
                                stdout=subprocess.PIPE, stderr=errors, text=True)


def worker_errors(store: CrashStore) -> str:
    path = store.root / "worker.err"
    return path.read_text()[-3000:] if path.exists() else ""


def wait_ready(proc: subprocess.Popen[str], store: CrashStore, timeout: float = 30.0) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    assert line.strip() == "READY", f"worker did not start: {line!r}\n{worker_errors(store)}"


def applied_so_far(store: CrashStore) -> int:
    """How many mails the worker has applied so far (0 before its tables exist)."""
    try:
        rows = store.query("SELECT applied FROM totals")
    except (sqlite3.OperationalError, asyncpg.UndefinedTableError):
        return 0
    return int(rows[0][0]) if rows else 0


@pytest.mark.slow
def test_mail_is_handled_exactly_once_in_effect_across_repeated_sigkills(
        tmp_path: Path, crash_store: CrashStore) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    store, log = crash_store, tmp_path / "committed.log"
    progress = []
    for _ in range(KILLS):
        # Kill after a random amount of progress (not time), so that every kill lands
        # mid-work whether the machine is busy or idle: 4 kills x at most MAILS/6 < MAILS.
        target = (progress[-1] if progress else 0) + rng.randint(MAILS // 30, MAILS // 6)
        proc = start(store, log)
        try:
            wait_ready(proc, store)
            deadline = time.monotonic() + 60
            while applied_so_far(store) < target:
                assert proc.poll() is None, (f"the worker stopped ({proc.returncode}) before "
                                             f"it was killed:\n{worker_errors(store)}")
                assert time.monotonic() < deadline, (f"no progress to {target} in 60 s:\n"
                                                     f"{worker_errors(store)}")
                # (each look at PostgreSQL is a new connection: a new server process)
                time.sleep(0.005 if store.url is None else 0.03)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        progress.append(applied_so_far(store))
    final = start(store, log)
    out, _ = final.communicate(timeout=120)
    assert final.returncode == 0 and out.split() == ["READY", "DONE"], worker_errors(store)

    def one(sql: str) -> object:
        return store.query(sql)[0][0]

    stored = dict(store.query("SELECT idempotency_key, id FROM mail "
                              "WHERE sender = 'producer'"))
    statuses = dict(store.query("SELECT status, COUNT(*) FROM mail_deliveries "
                                "GROUP BY status"))
    [(total, applied, handled, skipped)] = store.query(
        "SELECT total, applied, handled, skipped FROM totals")
    effects = one("SELECT COUNT(*) FROM effects")
    redelivered = one("SELECT COUNT(*) FROM mail_deliveries WHERE attempts > 1")
    committed = [line.split() for line in log.read_text().splitlines()]
    duplicates = sum(int(dup) for _, _, dup in committed)
    print(f"\n[{store.backend}] seed {seed}; applied after each kill: {progress}")
    print(f"mails stored {len(stored)} (of {MAILS}); committed sends logged {len(committed)} "
          f"(of which repeats dropped as duplicates: {duplicates}); deliveries {statuses}; "
          f"delivered more than once: {redelivered}; handler runs {handled}; effects applied "
          f"{applied}; repeats skipped by the idempotent handler: {skipped}")

    assert progress[-1] < MAILS, "the kills should interrupt the work, not follow it"
    assert len(stored) == MAILS  # each mail stored once, whatever was resent
    for key, mail_id, _ in committed:  # every committed send is there, under its first id
        assert stored[key] == mail_id
    assert statuses == {"acked": MAILS}  # every mail delivered and acknowledged
    assert effects == applied == MAILS
    assert total == sum(range(MAILS))  # no effect lost, none applied twice
    assert handled == applied + skipped
