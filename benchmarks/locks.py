"""Benchmark: the cost of locks and auto-pause, alone and under contention.

What is measured
----------------
A real runtime (no agents) on a real SQLite file (WAL, group commit) in a temporary
directory, with a workspace folder. Four figures:

* ``uncontended_acquire_release_per_s``: one task takes and releases an explicit lock
  (``runtime.resources.acquire`` then ``release``) on one resource, ``UNCONTENDED_OPS``
  times in a row. Each pair is two durable store writes (the grant, with its fencing
  token, and the release), awaited one after the other, so this is bound by commit
  latency.
* ``contended_ops_per_s``: ``TASKS`` (100) tasks at once, each taking the same resource
  ``ROUNDS`` times (acquire with ``wait_s`` then release). One lock-holder at a time,
  in arrival order; the figure is completed acquire+release pairs per second of wall
  time. Every grant's token must be larger than the one before it, and no two tasks
  may ever hold the lock at once (both checked; any failure aborts the benchmark).
* ``autopause_uncontended_ops_per_s``: one task calls ``append_file`` through the tool
  registry (validation, the auto-pause gate, the store check for locks, the file
  write) ``UNCONTENDED_OPS`` times.
* ``autopause_contended_ops_per_s``: ``TASKS`` tasks at once, each calling
  ``append_file`` on the same file ``ROUNDS`` times; every line must be in the file.

Why
---
A lock protects long work (seconds to minutes of model calls), so what matters is that
its own cost (about a millisecond) is small next to that, and that it stays fair and
does not collapse when many tasks queue for one resource.

Run it with ``python benchmarks/locks.py``. The last line of its output is one JSON
object with the figures (units in the key names).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TASKS = 100
ROUNDS = 10
UNCONTENDED_OPS = 1000
RESOURCE = "custom:bench"
RERUN = "python benchmarks/locks.py"


class BenchmarkError(RuntimeError):
    """An outcome that would make the figures meaningless (a lost line, a double grant)."""


async def measure() -> dict[str, Any]:
    from wakeful.models.base import ToolCall
    from wakeful.models.registry import ModelRegistry
    from wakeful.project.definitions import ResourcesConfig
    from wakeful.resources import ResourceManager
    from wakeful.runtime.runtime import Runtime
    from wakeful.store.sqlite import SQLiteStore
    from wakeful.toolkit.context import ToolContext

    with tempfile.TemporaryDirectory(prefix="wakeful-bench-locks-") as tmp:
        root = Path(tmp)
        config = ResourcesConfig(auto_pause_timeout_s=120, max_lock_wait_s=600)
        runtime = Runtime(store=SQLiteStore(root / "wakeful.db"), models=ModelRegistry(root),
                          resources=ResourceManager(root / "workspace", config))
        await runtime.start()
        resources = runtime.resources
        allowed = frozenset(runtime.tools.names())
        figures: dict[str, Any] = {}
        try:
            # 1. explicit locks, one task
            ctx = ToolContext(agent="solo", task_id="t_solo", runtime=runtime)
            tokens: list[int] = []
            t0 = time.perf_counter()
            for _ in range(UNCONTENDED_OPS):
                got = await resources.acquire(ctx, RESOURCE, "write", 60, 0)
                if got.lock is None:
                    raise BenchmarkError(f"uncontended acquire failed: {got.blocked_by}")
                tokens.append(got.lock.token)
                await resources.release(ctx, RESOURCE)
            elapsed = time.perf_counter() - t0
            figures["uncontended_acquire_release_per_s"] = round(UNCONTENDED_OPS / elapsed, 1)
            figures["uncontended_pair_ms"] = round(elapsed / UNCONTENDED_OPS * 1000, 3)

            # 2. explicit locks, 100 tasks on one resource
            holding: list[str] = []
            granted: list[int] = []

            async def contender(i: int) -> None:
                me = ToolContext(agent=f"agent-{i:03d}", task_id=f"t_{i:03d}", runtime=runtime)
                for _ in range(ROUNDS):
                    got = await resources.acquire(me, RESOURCE, "write", 60, 300)
                    if got.lock is None:
                        raise BenchmarkError(f"task {i} timed out: {got.blocked_by}")
                    if holding:
                        raise BenchmarkError(f"task {i} was granted the lock while "
                                             f"{holding} held it")
                    holding.append(me.task_id)
                    granted.append(got.lock.token)
                    await asyncio.sleep(0)  # let the others try to barge in
                    holding.remove(me.task_id)
                    await resources.release(me, RESOURCE)

            t0 = time.perf_counter()
            await asyncio.gather(*(contender(i) for i in range(TASKS)))
            elapsed = time.perf_counter() - t0
            if granted != sorted(granted) or len(set(granted)) != len(granted):
                raise BenchmarkError("fencing tokens were not strictly increasing")
            figures["contended_ops_per_s"] = round(TASKS * ROUNDS / elapsed, 1)
            figures["contended_wall_s"] = round(elapsed, 3)

            # 3. auto-pause through the tool registry, one task
            async def append(task: ToolContext, path: str, text: str) -> None:
                outcome = await runtime.tools.call(task, allowed, ToolCall(
                    id="c", name="append_file", arguments=json.dumps(
                        {"path": path, "text": text})))
                if not outcome.ok:
                    raise BenchmarkError(outcome.content)

            t0 = time.perf_counter()
            for n in range(UNCONTENDED_OPS):
                await append(ctx, "solo.txt", f"line {n}")
            elapsed = time.perf_counter() - t0
            figures["autopause_uncontended_ops_per_s"] = round(UNCONTENDED_OPS / elapsed, 1)

            # 4. auto-pause, 100 tasks appending to one file
            async def appender(i: int) -> None:
                me = ToolContext(agent=f"agent-{i:03d}", task_id=f"t_{i:03d}", runtime=runtime)
                for n in range(ROUNDS):
                    await append(me, "shared.txt", f"{i}-{n}")

            t0 = time.perf_counter()
            await asyncio.gather(*(appender(i) for i in range(TASKS)))
            elapsed = time.perf_counter() - t0
            lines = (root / "workspace" / "shared.txt").read_text().splitlines()
            expected = {f"{i}-{n}" for i in range(TASKS) for n in range(ROUNDS)}
            if sorted(lines) != sorted(expected):
                raise BenchmarkError(f"{len(expected) - len(set(lines))} appended lines lost")
            figures["autopause_contended_ops_per_s"] = round(TASKS * ROUNDS / elapsed, 1)
            figures["contended_tasks"] = TASKS
            figures["rounds_per_task"] = ROUNDS
        finally:
            await runtime.stop()
        return figures


def main() -> None:
    try:
        figures = asyncio.run(measure())
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    rows = [
        ("explicit lock, 1 task", f"{UNCONTENDED_OPS} acquire+release",
         figures["uncontended_acquire_release_per_s"]),
        ("explicit lock, 100 tasks, 1 resource", f"{TASKS * ROUNDS} acquire+release",
         figures["contended_ops_per_s"]),
        ("auto-pause append_file, 1 task", f"{UNCONTENDED_OPS} tool calls",
         figures["autopause_uncontended_ops_per_s"]),
        ("auto-pause append_file, 100 tasks, 1 file", f"{TASKS * ROUNDS} tool calls",
         figures["autopause_contended_ops_per_s"]),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'work':<22}  {'per second':>10}")
    for case, work, rate in rows:
        print(f"{case:<{width}}  {work:<22}  {rate:>10.1f}")
    print(f"(uncontended acquire+release: {figures['uncontended_pair_ms']} ms per pair; "
          "SQLite, WAL, synchronous=normal)")
    print(f"rerun: {RERUN}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
