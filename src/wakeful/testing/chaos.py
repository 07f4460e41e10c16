"""Chaos runs: real worker processes on one store, faults at random, history checked.

Like Jepsen, in miniature: start several ``chaos_project`` workers on one store
(SQLite, or PostgreSQL with ``store_url``), and while they work SIGKILL one at random
(restarting it soon after) or SIGSTOP one for longer than its leases (then SIGCONT it),
and on PostgreSQL also kill the workers' database connections
(``pg_terminate_backend``), at random moments. When the
work is done, stop them cleanly and check what the store and the side logs recorded:

* every task finished, and each conversation is exactly its script: no step lost,
  played twice or interleaved by two workers (``double_runs`` counts the ones that
  are not);
* every delegation made one task, every note was mailed once and taken by exactly one
  sweep, every person's mail got exactly one answer (``duplicate_effects`` and
  ``lost_mails``);
* every due time of the schedule fired once;
* the shared file's lines carry lock tokens that only grow (``stale_writes`` counts a
  write that landed after a newer holder's; a repeated token is the documented
  at-least-once re-run of an interrupted call, counted in ``duplicate_effects``);
* the model was asked about once per committed step (``model_calls_per_step``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from wakeful.testing.chaos_project import EXPECTED_SAYS, PEOPLE_MAILS, write_project

_TOKEN = re.compile(r'"token": (\d+)')
_MAIL_ID = re.compile(r'"id": "(m_[0-9a-z]+)"')


async def _pg_rows(url: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(url, timeout=30)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def _cluster_of(url: str) -> tuple[str, str]:
    """The local PostgreSQL cluster (version, name) serving ``url``'s port, as
    ``pg_lsclusters`` lists it: the restart fault restarts that server only."""
    port = str(urlsplit(url).port or 5432)
    listed = subprocess.run(["pg_lsclusters", "--no-header"], check=True,
                            capture_output=True, text=True).stdout
    for line in listed.splitlines():
        version, name, cluster_port, *_ = line.split()
        if cluster_port == port:
            return version, name
    raise RuntimeError(f"no local PostgreSQL cluster listens on port {port} (pg_lsclusters)")


@dataclass
class ChaosReport:
    kills: int = 0
    stops: int = 0
    workers: int = 0
    tasks: int = 0
    mails: int = 0
    tool_calls: int = 0
    steps: int = 0
    model_calls: int = 0
    double_runs: int = 0
    lost_tasks: int = 0
    lost_mails: int = 0
    duplicate_effects: int = 0
    stale_writes: int = 0
    connection_kills: int = 0
    postgres_restarts: int = 0
    reruns: int = 0  # interrupted tool calls run again (at-least-once, documented)
    reclaimed: int = 0  # queued tasks a worker had lost track of and took again
    finished: bool = False
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def model_calls_per_step(self) -> float:
        return round(self.model_calls / self.steps, 4) if self.steps else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model_calls_per_step"] = self.model_calls_per_step
        data["problems"] = [p[:4000] for p in self.problems[:20]]
        return data


class Chaos:
    """Runs ``workers`` worker processes on ``root`` and injects faults at random."""

    def __init__(self, root: Path, *, workers: int = 3, jobs: int = 24, faults: int = 30,
                 seed: int | None = None, lease_s: float = 2.0, kill_share: float = 0.7,
                 deadline_s: float = 240.0, store_url: str | None = None,
                 connection_kills: float = 0.0, restart_postgres: bool = False) -> None:
        self.root = root
        self.store_url = store_url
        self.connection_kills = connection_kills if store_url else 0.0
        # one PostgreSQL restart, at a random one of the faults (needs pg_ctlcluster)
        # (early, at the first or second fault: a short run may end before the rest)
        self.restart_at = (random.Random(seed).randrange(min(2, max(1, faults)))
                           if store_url and restart_postgres else None)
        self.workers = workers
        self.jobs = jobs
        self.faults = faults
        self.random = random.Random(seed)
        self.lease_s = lease_s
        self.kill_share = kill_share
        self.deadline_s = deadline_s
        self.db = root / "wakeful.db"
        self.log = root / "model-calls.log"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.report = ChaosReport(workers=workers)

    # processes -----------------------------------------------------------
    def _spawn(self) -> subprocess.Popen[bytes]:
        out = (self.root / "workers.out").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen([sys.executable, "-m", "wakeful.testing.chaos_project",
                                 str(self.root), str(self.log)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)

    def _fault(self, index: int) -> None:
        if index == self.restart_at:
            assert self.store_url is not None
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect",
                            *_cluster_of(self.store_url), "restart"], check=True,
                           capture_output=True)
            self.report.postgres_restarts += 1
            return
        if self.random.random() < self.connection_kills:
            self._rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                       "application_name LIKE 'wakeful%' AND datname = current_database() "
                       "AND pid != pg_backend_pid()")
            self.report.connection_kills += 1
            return
        index = self.random.randrange(len(self.procs))
        proc = self.procs[index]
        if self.random.random() < self.kill_share:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.report.kills += 1
            time.sleep(self.random.uniform(0.05, 0.8))
            self.procs[index] = self._spawn()
        else:  # stalled past its leases (sometimes), then back: it must notice
            proc.send_signal(signal.SIGSTOP)
            time.sleep(self.random.uniform(0.5, 2.5 * self.lease_s))
            proc.send_signal(signal.SIGCONT)
            self.report.stops += 1

    def run(self) -> ChaosReport:
        started = time.monotonic()
        write_project(self.root, self.jobs, self.lease_s, self.store_url)
        self.procs = [self._spawn() for _ in range(self.workers)]
        try:
            deadline = started + self.deadline_s
            injected = 0
            while time.monotonic() < deadline:
                time.sleep(self.random.uniform(0.2, 1.2))
                if self._done():
                    break
                if injected < self.faults:
                    self._fault(injected)
                    injected += 1
            self.report.finished = self._done()
        finally:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
            for proc in self.procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.report.seconds = round(time.monotonic() - started, 2)
        self.check()
        return self.report

    # history -------------------------------------------------------------
    def _rows(self, sql: str) -> list[Any]:
        if self.store_url is not None:
            return asyncio.run(_pg_rows(self.store_url, sql))
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(sql).fetchall()

    def _done(self) -> bool:
        try:
            boss = self._rows("SELECT COUNT(*) FROM tasks WHERE agent = 'boss' AND state IN "
                              "('done', 'failed', 'cancelled')")[0][0]
            open_work = self._rows("SELECT COUNT(*) FROM tasks WHERE agent != 'clerk' AND "
                                   "state NOT IN ('done', 'failed', 'cancelled')")[0][0]
            notes = self._rows("SELECT COUNT(*) FROM mail_deliveries d JOIN mail m ON "
                               "m.id = d.mail_id WHERE d.owner = 'clerk' AND m.sender LIKE "
                               "'boss/%' AND d.status != 'acked'")[0][0]
            answered = self._rows("SELECT COUNT(DISTINCT in_reply_to) FROM mail WHERE "
                                  "sender = 'clerk' AND recipient = 'person:ops'")[0][0]
        except (sqlite3.OperationalError, OSError, asyncpg.PostgresError):
            return False
        return bool(boss == self.jobs and open_work == 0 and notes == 0
                    and answered >= PEOPLE_MAILS)

    def check(self) -> None:
        r = self.report
        tasks = self._rows("SELECT id, agent, instruction, state, step, parent_id, "
                           "created_by, tool_calls FROM tasks")
        r.tasks = len(tasks)
        r.mails = self._rows("SELECT COUNT(*) FROM mail")[0][0]
        r.steps = sum(t[4] for t in tasks)
        r.reclaimed = self._rows("SELECT COUNT(*) FROM events "
                                 "WHERE type = 'task.reclaimed'")[0][0]
        r.tool_calls = sum(t[7] for t in tasks)
        if self.log.exists():
            r.model_calls = len(self.log.read_text().splitlines())
        messages: dict[str, list[dict[str, Any]]] = {}
        for task_id, data in self._rows("SELECT task_id, data FROM task_messages "
                                        "ORDER BY task_id, seq"):
            messages.setdefault(task_id, []).append(json.loads(data))
        for task_id, agent, instruction, state, *_ in tasks:
            if state != "done" and not (agent == "clerk" and state in ("queued", "running")):
                r.lost_tasks += 1
                r.problems.append(f"task {task_id} ({agent}) ended {state}; its history: "
                                  + self._history(task_id))
            if state != "done":
                continue
            kind = agent if agent != "clerk" else (
                "clerk-sweep" if instruction.startswith("sweep") else "clerk-answer")
            said = [m.get("content") for m in messages.get(task_id, [])
                    if m["role"] == "assistant"]
            wanted = [s.replace("{instruction}", instruction) for s in EXPECTED_SAYS[kind]]
            if said != wanted:
                r.double_runs += 1
                r.problems.append(f"task {task_id} ({agent}) said {said}, not {wanted}")
        self._check_effects(tasks, messages)
        self._check_schedule()
        self._check_writes()

    def _history(self, task_id: str) -> str:
        """A lost task's recorded events, in order (which worker did what, from the
        run ids of ``run.started``), so that a failure can be read after the fact."""
        workers = {run: json.loads(data).get("worker") for run, data in self._rows(
            "SELECT run_id, data FROM events WHERE type = 'run.started'")}
        rows = self._rows(f"SELECT ts, run_id, type, data FROM events WHERE task_id = "
                          f"'{task_id}' ORDER BY ts")
        return "; ".join(f"{ts:.2f} {workers.get(run, run)} {kind} {data[:160]}"
                         for ts, run, kind, data in rows)

    def _check_effects(self, tasks: list[Any], messages: dict[str, list[dict[str, Any]]]
                       ) -> None:
        r = self.report
        boss_ids = [t[0] for t in tasks if t[1] == "boss"]
        helpers = Counter(t[5] for t in tasks if t[1] == "helper")
        for boss in boss_ids:
            if helpers[boss] != 1:
                r.duplicate_effects += max(0, helpers[boss] - 1)
                said = [str(m.get("content"))[:200] for m in messages.get(boss, [])
                        if m["role"] == "tool"][:1]  # what the delegation answered
                r.problems.append(f"boss task {boss} made {helpers[boss]} helper tasks "
                                  f"(its tool said {said})")
        notes = self._rows("SELECT id, sender FROM mail WHERE recipient = 'clerk' AND "
                           "sender LIKE 'boss/%'")
        per_boss = Counter(sender.split("/", 1)[1] for _, sender in notes)
        r.duplicate_effects += sum(n - 1 for n in per_boss.values() if n > 1)
        taken: Counter[str] = Counter()
        for task_id, agent, instruction, *_ in tasks:
            if agent == "clerk" and instruction.startswith("sweep"):
                for m in messages.get(task_id, []):
                    if m["role"] == "tool":
                        taken.update(_MAIL_ID.findall(m.get("content") or ""))
        self._once([m for m, _ in notes], taken, "note", "taken by {n} sweeps")
        people = [row[0] for row in self._rows("SELECT id FROM mail WHERE sender = "
                                               "'person:ops'")]
        answers = Counter(row[0] for row in self._rows(
            "SELECT in_reply_to FROM mail WHERE sender = 'clerk' AND recipient = "
            "'person:ops'"))
        self._once(people, answers, "person mail", "answered {n} times")

    def _once(self, mail_ids: list[str], seen: Counter[str], what: str, twice: str) -> None:
        """Each mail must have been handled exactly once: none is lost, none twice."""
        for mail_id in mail_ids:
            n = seen[mail_id]
            if n == 0:
                self.report.lost_mails += 1
                self.report.problems.append(f"{what} {mail_id} was never handled")
            elif n > 1:
                self.report.duplicate_effects += n - 1
                self.report.problems.append(f"{what} {mail_id} {twice.format(n=n)}")

    def _check_schedule(self) -> None:
        dues: Counter[str] = Counter()
        for (data,) in self._rows("SELECT data FROM events WHERE type = 'timer.fired'"):
            dues.update(json.loads(data).get("dues", []))
        twice = [d for d, n in dues.items() if n > 1]
        if twice:
            self.report.duplicate_effects += len(twice)
            self.report.problems.append(f"due times fired twice: {twice[:5]}")

    def _check_writes(self) -> None:
        shared = self.root / "workspace" / "shared.txt"
        if not shared.exists():
            return
        highest = 0
        for line in shared.read_text().splitlines():
            match = _TOKEN.search(line)
            if match is None:
                continue
            token = int(match.group(1))
            if token < highest:
                self.report.stale_writes += 1
                self.report.problems.append(f"stale write with token {token} after {highest}")
            elif token == highest:
                self.report.reruns += 1
            highest = max(highest, token)
