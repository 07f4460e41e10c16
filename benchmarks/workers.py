"""Benchmark: real `wakeful worker` processes sharing one PostgreSQL database.

What is measured
----------------
A project folder (scripted models at 0 ms, ``store: {url: ...}`` in ``wakeful.yaml``,
``worker_lease_s`` = ``--lease``, default 2 s) on a PostgreSQL database made fresh for
this run (``CREATE DATABASE wakeful_bench_<random>``, dropped at the end). Workers are
``python -m wakeful worker -p ROOT --plain`` subprocesses; tasks are created from this
process through the store (as ``wakeful start-task`` or the API would), and everything is
read back from the database.

* **Steps per second with 1, 2 and 4 workers** (``steps_per_s_N_worker(s)``): N workers
  share 200 agents (each worker takes its share by lease); 400 tasks of 10 steps each
  (9 ``word_count`` tool calls, then a reply) are created at once; from the first
  creation until the database shows all 400 ``done``. The machine has 2 cores (shared),
  so more workers cannot add CPU here: this shows the cost of sharing, not scaling.
* **Failover after SIGKILL** (``failover_p50_s``, ``failover_p99_s``): 3 workers; for
  each of ``--kills`` kills, one worker is killed with SIGKILL, a task is queued at once
  for one of its agents, and the time is taken from the kill until that task has started
  on another worker (its ``started_at``, stamped by the worker that ran it; the same
  host's clock); also until none of the dead worker's agents is still leased to it
  (``agent_leases``). The killed worker is restarted and the next kill waits until the
  agents are spread over 3 workers again. A worker SIGKILLed on the same host is seen
  dead at once by its pid (``runtime/ownership.py``), so this is the **pid path**:
  detection within a heartbeat round (lease / 3). The **lease-expiry path** (a worker on
  another host, or stalled) is measured the same way with SIGSTOP instead
  (``--stops``, default 5; ``stall_failover_*``): its pid stays alive, so its agents
  move only when its leases lapse. Target: ``failover_p99_s`` < 2 x the lease.
* **Mail latency across workers** (``cross_worker_mail_p99_ms``): 100 reader agents each
  run a task waiting in ``wait_for_event`` for a mail; once all wait, 100 sender agents
  each run a task that sends its reader one mail (``send_mail``). Latency = from the mail
  row's ``created_at`` (stamped by the sender before its commit) to the reader's
  ``task.woke`` event, counted only for pairs whose sender and reader were leased to
  different workers. Target: p99 < 50 ms.
* **The history** (``double_runs``, ``lost_tasks``, ``duplicate_steps``), from
  ``tasks`` and ``task_messages`` after all of the above (kills included): a task not
  ``done`` is lost; a task whose conversation is not exactly its script's (a step said
  twice, or said out of order) ran twice; ``duplicate_steps`` counts the assistant
  messages beyond the script's. Also shown: model calls made again for a step
  (``model.call`` events per task and step beyond one: at-least-once, expected after a
  kill). Targets: the three counts 0.

Run it with ``python benchmarks/workers.py`` (PostgreSQL at 127.0.0.1:5432, trust auth,
user postgres; ``--server URL`` for another). It takes 3-4 minutes. The last line of its
output is one JSON object with the headline figures (units in the key names).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from wakeful.runtime.agent import new_task_record
from wakeful.store.postgres import PostgresStore

RERUN = "python benchmarks/workers.py"
SERVER = "postgresql://postgres@127.0.0.1:5432"
STEP_AGENTS, STEP_TASKS, STEPS = 200, 400, 10
WORKER_COUNTS = (1, 2, 4)
PAIRS = 100
FAILOVER_WORKERS = 3
SETTLE_TIMEOUT_S = 60.0
DONE_TIMEOUT_S = 120.0
MAIL_WAKE_TIMEOUT_S = 10.0
STEP_SAYS = [f"step {k}" for k in range(STEPS - 1)] + ["done"]
SAYS = {"steps": STEP_SAYS, "quick": ["quick done"], "reader": ["waiting", "woke"],
        "sender": ["sending", "sent"]}


class BenchmarkError(RuntimeError):
    """A run did not end as expected."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# the project ------------------------------------------------------------------------
def write_project(root: Path, url: str, lease_s: float) -> None:
    (root / "agents").mkdir(parents=True)
    (root / "scripts").mkdir()
    config = {"name": "bench-workers", "store": {"url": url}, "worker_lease_s": lease_s,
              "poll_interval_s": 0.2}
    (root / "wakeful.yaml").write_text(yaml.safe_dump(config))
    steps = [{"say": STEP_SAYS[k], "tool_calls": [
        {"tool": "word_count", "args": {"text": "word " * (k + 1)}}]}
        for k in range(STEPS - 1)] + [{"say": "done"}]
    scripts = {
        "steps": {"latency_ms": 0, "scripts": [
            {"match": "^quick", "steps": [{"say": "quick done"}]}, {"steps": steps}]},
        "reader": {"latency_ms": 0, "scripts": [{"steps": [
            {"say": "waiting", "tool_calls": [{"tool": "wait_for_event", "args": {
                "events": [{"kind": "mail", "subject": "ping"}]}}]},
            {"say": "woke"}]}]},
        "sender": {"latency_ms": 0, "scripts": [{"steps": [
            {"say": "sending", "tool_calls": [{"tool": "send_mail", "args": {
                "to": "{instruction}", "subject": "ping", "body": "wake up"}}]},
            {"say": "sent"}]}]},
    }
    for name, script in scripts.items():
        (root / "scripts" / f"{name}.yaml").write_text(yaml.safe_dump(script))
    groups = (("a", STEP_AGENTS, "steps", ["word_count"]),
              ("r", PAIRS, "reader", ["wait_for_event"]),
              ("s", PAIRS, "sender", ["send_mail"]))
    for prefix, count, model, tools in groups:
        for i in range(count):
            agent = {"name": f"{prefix}{i:03d}", "model": f"scripted:{model}",
                     "tools": tools, "answer_mail": False, "max_concurrent_tasks": 8,
                     "restart": {"policy": "never"}}
            (root / "agents" / f"{prefix}{i:03d}.yaml").write_text(yaml.safe_dump(agent))


class Workers:
    """The worker processes of one project, by slot."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.out = (root / "workers.out").open("ab")

    def spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen([sys.executable, "-m", "wakeful", "worker", "-p",
                                 str(self.root), "--plain"], stdout=self.out,
                                stderr=subprocess.STDOUT, env=env)

    def start(self, n: int) -> None:
        self.procs = [self.spawn() for _ in range(n)]

    def stop(self) -> None:
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
        self.procs = []


# reading the database ------------------------------------------------------------------
async def owners(store: PostgresStore) -> dict[str, int | None]:
    """agent -> the pid of the live worker holding its lease (None: nobody)."""
    rows = await store.fetch(
        "SELECT l.agent, w.pid FROM agent_leases l LEFT JOIN workers w ON w.id = l.owner "
        "AND l.expires_at > extract(epoch from clock_timestamp())")
    return {r[0]: r[1] for r in rows}


async def settled(store: PostgresStore, workers: Workers, agents: int) -> None:
    """Wait until every agent is leased to one of the live workers, each holding about
    its share."""
    pids = {p.pid for p in workers.procs}
    fair = agents // len(pids)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        held = await owners(store)
        per = Counter(held.values())
        if (len(held) == agents and set(per) == pids
                and min(per.values()) >= fair * 0.8):
            return
        await asyncio.sleep(0.1)
    raise BenchmarkError(f"the agents were not spread over {len(pids)} workers within "
                         f"{SETTLE_TIMEOUT_S:.0f} s (see {workers.root / 'workers.out'})")


async def wait_done(store: PostgresStore, ids: list[str],
                    timeout_s: float = DONE_TIMEOUT_S) -> float:
    """Wait until all tasks ``ids`` are done; return the time.time() it was seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = await store.fetch("SELECT count(*) FROM tasks WHERE id = ANY($1::text[]) "
                                 "AND state IN ('done', 'failed', 'cancelled')", ids)
        if done[0][0] == len(ids):
            return time.time()
        await asyncio.sleep(0.02)
    raise BenchmarkError(f"{len(ids)} tasks not all finished in {timeout_s:.0f} s")


async def create(store: PostgresStore, agent: str, instruction: str) -> str:
    record = new_task_record(agent, instruction, created_by="bench")
    await store.create_task(record)
    return record.id


# the measures ---------------------------------------------------------------------------
async def steps_per_s(store: PostgresStore, workers: Workers, n: int, agents: int
                      ) -> float:
    workers.start(n)
    try:
        await settled(store, workers, agents)
        started = time.time()
        ids = await asyncio.gather(*(create(store, f"a{i % STEP_AGENTS:03d}", f"steps {n}")
                                     for i in range(STEP_TASKS)))
        ended = await wait_done(store, list(ids))
    finally:
        workers.stop()
    return STEP_TASKS * STEPS / (ended - started)


async def failover(store: PostgresStore, workers: Workers, agents: int, kills: int,
                   stall: bool) -> list[tuple[float, float]]:
    """(until its task started, until its agents all left it) per kill, in seconds."""
    found: list[tuple[float, float]] = []
    for k in range(kills):
        await settled(store, workers, agents)
        held = await owners(store)
        busy = [i for i, p in enumerate(workers.procs)  # the workers running step agents
                if any(pid == p.pid and a[0] == "a" for a, pid in held.items())]
        slot = busy[k % len(busy)]
        victim = workers.procs[slot]
        mine = sorted(a for a, pid in held.items() if pid == victim.pid and a[0] == "a")
        killed = time.time()
        victim.send_signal(signal.SIGSTOP if stall else signal.SIGKILL)
        if not stall:
            victim.wait()  # reaped at once: a zombie's pid would still look alive
        task_id = await create(store, mine[0], f"quick {k}")
        gone_s = None
        deadline = time.monotonic() + DONE_TIMEOUT_S
        while True:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"kill {k}: the task of {mine[0]} never started")
            if gone_s is None:
                rows = await store.fetch("SELECT count(*) FROM agent_leases l JOIN workers "
                                         "w ON w.id = l.owner WHERE w.pid = $1 AND "
                                         "l.agent = ANY($2::text[])", victim.pid, mine)
                if rows[0][0] == 0:
                    gone_s = time.time() - killed
            rows = await store.fetch("SELECT started_at FROM tasks WHERE id = $1", task_id)
            if rows[0][0] is not None and gone_s is not None:
                found.append((rows[0][0] - killed, gone_s))
                break
            await asyncio.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        workers.procs[slot] = workers.spawn()
        print(f"  {'stall' if stall else 'kill'} {k + 1}: task started after "
              f"{found[-1][0]:.3f} s, agents moved after {found[-1][1]:.3f} s",
              file=sys.stderr, flush=True)
    return found


async def cross_worker_mail(store: PostgresStore, workers: Workers, agents: int
                            ) -> tuple[list[float], int, int]:
    """Latencies (ms) of the mails whose sender and reader ran on different workers,
    how many pairs were on the same worker, and how many readers on another worker than
    their sender were not woken within MAIL_WAKE_TIMEOUT_S."""
    await settled(store, workers, agents)
    held = await owners(store)
    readers = await asyncio.gather(*(create(store, f"r{i:03d}", "wait")
                                     for i in range(PAIRS)))
    deadline = time.monotonic() + DONE_TIMEOUT_S
    while True:
        rows = await store.fetch("SELECT count(*) FROM timers WHERE action = 'wake_task' "
                                 "AND state = 'active' AND task_id = ANY($1::text[])",
                                 list(readers))
        if rows[0][0] == PAIRS:
            break
        if time.monotonic() > deadline:
            raise BenchmarkError(f"only {rows[0][0]} of {PAIRS} readers are waiting")
        await asyncio.sleep(0.05)
    senders = await asyncio.gather(*(create(store, f"s{i:03d}", f"r{i:03d}")
                                     for i in range(PAIRS)))
    await wait_done(store, list(senders))
    with contextlib.suppress(BenchmarkError):  # counted below: readers not woken
        await wait_done(store, list(readers), MAIL_WAKE_TIMEOUT_S)
    if await owners(store) != held:
        raise BenchmarkError("agents changed workers during the mail run")
    sent = {r[0]: r[1] for r in await store.fetch(
        "SELECT recipient, created_at FROM mail WHERE subject = 'ping'")}
    woke = {r[0]: r[1] for r in await store.fetch(
        "SELECT agent, ts FROM events WHERE type = 'task.woke' AND task_id = "
        "ANY($1::text[])", list(readers))}
    latencies: list[float] = []
    same = asleep = 0
    for i in range(PAIRS):
        reader, sender = f"r{i:03d}", f"s{i:03d}"
        if reader not in sent:
            raise BenchmarkError(f"{reader}: no mail was sent to it")
        if held[reader] == held[sender]:
            same += 1
        elif reader not in woke:
            asleep += 1
            print(f"  not woken: {reader} (worker {held[reader]}) by {sender} "
                  f"(worker {held[sender]})", file=sys.stderr)
        else:
            latencies.append((woke[reader] - sent[reader]) * 1000)
    return latencies, same, asleep


async def history(store: PostgresStore) -> dict[str, int]:
    tasks = await store.fetch("SELECT id, agent, instruction, state FROM tasks")
    said: dict[str, list[str]] = {}
    for task_id, data in await store.fetch("SELECT task_id, data FROM task_messages "
                                           "ORDER BY task_id, seq"):
        message = json.loads(data)
        if message.get("role") == "assistant":
            said.setdefault(task_id, []).append(message.get("content") or "")
    lost = double = duplicate = asleep = 0
    for task_id, agent, instruction, state in tasks:
        kind = {"r": "reader", "s": "sender"}.get(agent[0]) or (
            "quick" if instruction.startswith("quick") else "steps")
        if state == "waiting" and kind == "reader":
            asleep += 1  # a mail did not wake it (reported as mail_waits_not_woken)
            continue
        if state != "done":
            lost += 1
            print(f"  lost: task {task_id} ({agent}) ended {state}", file=sys.stderr)
            continue
        got, wanted = said.get(task_id, []), SAYS[kind]
        if got != wanted:
            double += 1
            duplicate += max(0, len(got) - len(wanted))
            print(f"  double run: task {task_id} said {got}", file=sys.stderr)
    calls = Counter((r[0], r[1]) for r in await store.fetch(
        "SELECT task_id, data::jsonb->>'step' FROM events WHERE type = 'model.call'"))
    again = sum(n - 1 for n in calls.values() if n > 1)
    return {"tasks": len(tasks), "lost_tasks": lost, "double_runs": double,
            "duplicate_steps": duplicate, "model_calls_repeated": again,
            "readers_still_waiting": asleep}


# the run ----------------------------------------------------------------------------------
async def measure(server: str, lease_s: float, kills: int, stops: int) -> dict[str, Any]:
    database = f"wakeful_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(f"{server}/postgres", timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchmarkError(f"PostgreSQL at {server} cannot be reached ({exc}); start it "
                             "or pass --server") from exc
    await admin.execute(f'CREATE DATABASE "{database}"')
    synchronous_commit = await admin.fetchval("SHOW synchronous_commit")
    agents = STEP_AGENTS + 2 * PAIRS
    result: dict[str, Any] = {"synchronous_commit": synchronous_commit, "lease_s": lease_s}
    try:
        with tempfile.TemporaryDirectory(prefix="wakeful-workers-bench-") as tmp:
            root = Path(tmp)
            url = f"{server}/{database}"
            write_project(root, url, lease_s)
            store = PostgresStore(url)
            await store.open()
            workers = Workers(root)
            try:
                for n in WORKER_COUNTS:
                    result[f"steps_{n}"] = await steps_per_s(store, workers, n, agents)
                    print(f"  {n} worker(s): {result[f'steps_{n}']:,.0f} steps/s",
                          file=sys.stderr, flush=True)
                workers.start(FAILOVER_WORKERS)
                result["mail_ms"], result["mail_same"], result["mail_asleep"] = (
                    await cross_worker_mail(store, workers, agents))
                result["failover"] = await failover(store, workers, agents, kills, False)
                result["stall"] = await failover(store, workers, agents, stops, True)
                await settled(store, workers, agents)
                workers.stop()
                result.update(await history(store))
            finally:
                workers.stop()
                await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    return result


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    def pct(values: list[float], q: float) -> float | None:
        return round(percentile(values, q), 3) if values else None

    start = [s for s, _ in r["failover"]]
    moved = [m for _, m in r["failover"]]
    stall = [s for s, _ in r["stall"]]
    return {
        "steps_per_s_1_worker": round(r["steps_1"]),
        "steps_per_s_2_workers": round(r["steps_2"]),
        "steps_per_s_4_workers": round(r["steps_4"]),
        "failover_p50_s": pct(start, 0.5), "failover_p99_s": pct(start, 0.99),
        "failover_max_s": pct(start, 1.0), "failover_kills": len(start),
        "failover_path": "pid (SIGKILL, same host)",
        "agents_moved_p50_s": pct(moved, 0.5), "agents_moved_p99_s": pct(moved, 0.99),
        "stall_failover_p50_s": pct(stall, 0.5), "stall_failover_p99_s": pct(stall, 0.99),
        "stall_failover_stops": len(stall),
        "lease_s": r["lease_s"],
        "cross_worker_mail_p50_ms": pct(r["mail_ms"], 0.5),
        "cross_worker_mail_p99_ms": pct(r["mail_ms"], 0.99),
        "cross_worker_mails": len(r["mail_ms"]),
        "cross_worker_mail_not_woken": r["mail_asleep"],
        "readers_still_waiting_at_end": r["readers_still_waiting"],
        "double_runs": r["double_runs"], "lost_tasks": r["lost_tasks"],
        "duplicate_steps": r["duplicate_steps"], "tasks_checked": r["tasks"],
        "model_calls_repeated": r["model_calls_repeated"],
        "postgres_synchronous_commit": r["synchronous_commit"],
    }


def show(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    lease = s["lease_s"]
    table = Table(title=f"Wakeful workers on PostgreSQL (lease {lease:g} s, "
                        f"synchronous_commit {s['postgres_synchronous_commit']})",
                  title_justify="left")
    for column, justify in (("what", "left"), ("figure", "right"), ("target", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for n, key in ((1, "steps_per_s_1_worker"), (2, "steps_per_s_2_workers"),
                   (4, "steps_per_s_4_workers")):
        table.add_row(f"steps/s, {n} worker(s), {STEP_TASKS} tasks x {STEPS} steps",
                      f"{s[key]:,}", "")
    table.add_row(f"failover after SIGKILL (pid path), p50 / p99 of {s['failover_kills']}",
                  f"{s['failover_p50_s']} / {s['failover_p99_s']} s", f"p99 < {2 * lease:g} s")
    table.add_row("  until no agent is leased to the dead worker, p50 / p99",
                  f"{s['agents_moved_p50_s']} / {s['agents_moved_p99_s']} s", "")
    table.add_row(f"failover after SIGSTOP (lease expiry), p50 / p99 of "
                  f"{s['stall_failover_stops']}",
                  f"{s['stall_failover_p50_s']} / {s['stall_failover_p99_s']} s",
                  f"p99 < {2 * lease:g} s")
    table.add_row(f"mail across workers, p50 / p99 ({s['cross_worker_mails']} mails)",
                  f"{s['cross_worker_mail_p50_ms']} / {s['cross_worker_mail_p99_ms']} ms",
                  "p99 < 50 ms")
    table.add_row(f"  readers on another worker not woken within {MAIL_WAKE_TIMEOUT_S:g} s",
                  str(s["cross_worker_mail_not_woken"]), "0")
    for key in ("double_runs", "lost_tasks", "duplicate_steps"):
        table.add_row(f"{key} (of {s['tasks_checked']:,} tasks)", str(s[key]), "0")
    table.add_row("model calls made again for a step (at-least-once)",
                  str(s["model_calls_repeated"]), "")
    console = Console(width=120)
    console.print(table)
    console.print(f"Rerun: {RERUN}", soft_wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", default=SERVER,
                        help=f"PostgreSQL server URL without a database (default {SERVER})")
    parser.add_argument("--lease", type=float, default=2.0, help="worker_lease_s (s)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs (pid path)")
    parser.add_argument("--stops", type=int, default=5, help="SIGSTOPs (lease expiry)")
    args = parser.parse_args()
    try:
        result = asyncio.run(measure(args.server, args.lease, args.kills, args.stops))
    except BenchmarkError as exc:
        sys.exit(f"benchmark failed: {exc}")
    summary = summarize(result)
    show(summary)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
