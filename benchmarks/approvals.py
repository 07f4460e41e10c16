"""Benchmark: 1,000 tasks each waiting for a person's approval, decided in one burst.

What is measured
----------------
A real ``Runtime`` with a real SQLite store (WAL, group commit) in a temporary
directory, on the real clock. One agent runs 1,000 tasks at once; each task's first
tool call matches the agent's ``approval:`` rule, so each task stores an approval and
waits (state ``waiting``). Then every approval is approved at once
(``asyncio.gather`` of 1,000 ``runtime.approvals.decide`` calls: a read, a
compare-and-set commit with its ``approval.decided`` event, shared by group commit).

* **Resume latency** (``approval_resume_p50_ms`` / ``approval_resume_p99_ms``): from
  the start of a task's ``decide`` call to the moment the approved tool runs in that
  task (``time.perf_counter``); the burst's last decisions wait for the ones before.
* **Memory of the waiting tasks** (``waiting_1000_rss_mb``): the resident set size of
  the whole process (``VmRSS``) once all 1,000 tasks wait, and, for scale, after the
  runtime started with no task (``idle_rss_mb``).

Run it with ``python benchmarks/approvals.py`` (well under a minute). The last line of
its output is one JSON object with the headline figures (units in the key names).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import wakeful
from wakeful.project.definitions import ProjectConfig
from wakeful.toolkit.context import ToolContext  # tools' type hints resolve here

RERUN = "python benchmarks/approvals.py"
TASKS = 1000
TIMEOUT_S = 240.0

ran_at: dict[str, float] = {}


@wakeful.tool
def stamp(ctx: ToolContext, label: str) -> str:
    """Record when this (approved) call ran."""
    ran_at[ctx.task_id] = time.perf_counter()
    return f"stamped {label}"


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(folder: Path) -> dict[str, Any]:
    agent = {"name": "writer", "model": "scripted:writer", "tools": ["stamp"],
             "answer_mail": False, "max_concurrent_tasks": TASKS,
             "approval": [{"tools": ["stamp"], "approvers": ["person:ada"]}]}
    model = wakeful.ScriptedModel.from_steps([
        {"say": "asking", "tool_calls": [{"tool": "stamp", "args": {"label": "{instruction}"}}]},
        {"say": "done"}])
    runtime = wakeful.build_runtime(agents=[agent], models={"scripted:writer": model},
                                    tools=[stamp], store=folder / "bench.db",
                                    config=ProjectConfig(poll_interval_s=0.5),
                                    root=folder)
    await runtime.start()
    try:
        idle = rss_mb()
        started = time.perf_counter()
        tasks = [await runtime.create_task("writer", f"task {i}") for i in range(TASKS)]
        async with asyncio.timeout(TIMEOUT_S):
            while runtime.approvals.waiting() < TASKS:
                await runtime.wait_changed()  # a task's state changed: look again
        asked_s = time.perf_counter() - started
        waiting_rss = rss_mb()
        pending = await runtime.approvals.pending()
        assert len(pending) == TASKS, len(pending)
        calls: dict[str, float] = {}

        async def approve(approval_id: str, task_id: str) -> None:
            calls[task_id] = time.perf_counter()
            await runtime.approvals.decide(approval_id, approve=True, by="person:ada")

        burst = time.perf_counter()
        await asyncio.gather(*(approve(a.id, a.task_id) for a in pending))
        decided_s = time.perf_counter() - burst
        async with asyncio.timeout(TIMEOUT_S):
            done = [await runtime.wait_task(t.id) for t in tasks]
        assert all(r.state.value == "done" for r in done)
        latencies = [(ran_at[t] - calls[t]) * 1000 for t in calls]
        return {"tasks": TASKS, "asked_s": asked_s, "decided_s": decided_s,
                "p50_ms": statistics.median(latencies),
                "p99_ms": percentile(latencies, 0.99), "max_ms": max(latencies),
                "idle_rss_mb": idle, "waiting_rss_mb": waiting_rss}
    finally:
        await runtime.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        try:
            found = asyncio.run(measure(Path(folder)))
        except (TimeoutError, AssertionError) as exc:
            sys.exit(f"benchmark failed: {exc!r}")
    print(f"{found['tasks']:,} tasks waiting for an approval (asked in "
          f"{found['asked_s']:.2f} s); all approved in one burst ({found['decided_s']:.2f} s "
          "for the 1,000 decide calls)")
    print(f"  decision -> task running again: p50 {found['p50_ms']:.1f} ms, "
          f"p99 {found['p99_ms']:.1f} ms, max {found['max_ms']:.1f} ms")
    print(f"  RSS: {found['waiting_rss_mb']:.1f} MB with 1,000 tasks waiting "
          f"({found['idle_rss_mb']:.1f} MB with none)")
    print(f"  rerun: {RERUN}")
    print(json.dumps({
        "approval_resume_p50_ms": round(found["p50_ms"], 3),
        "approval_resume_p99_ms": round(found["p99_ms"], 3),
        "waiting_1000_rss_mb": round(found["waiting_rss_mb"], 1),
        "idle_rss_mb": round(found["idle_rss_mb"], 1),
    }), flush=True)


if __name__ == "__main__":
    main()
