"""Benchmark: how precisely Wakeful wakes sleepers, and what ten thousand of them cost.

What is measured
----------------
Everything runs on a real ``Runtime`` with a real SQLite store (WAL, group commit) in a
temporary directory, on the real clock; each part in a fresh subprocess, so that its
memory is its own.

* **Timer lateness** (``timer_lateness_p99_ms``): 1,000 tasks each sleep on a durable
  timer (the ``sleep_until`` path: a timer row, the scheduler's heap and its single
  sleeper), the 1,000 due times spread evenly over one second. Lateness is the time
  from a timer's due time to the moment its sleeping task has control again (inside the
  tool, before the task's state goes back to running), measured with ``time.time()``.
  The same is also reported for a burst: 1,000 timers due at the same instant, where
  the last one woken waits for the 999 before it.
* **Event wake latency** (``event_wake_p99_ms``): 1,000 tasks each wait for a mail with
  their own subject (``wait_for_event``); the driver sends the mails one at a time.
  Latency is from the moment the mail is handed to the waits (the mailbox's arrival
  hook, right after the mail commits) to the moment the waiting task has control
  again. The time from the start of ``send`` (which includes the durable commit) to
  the wake-up is reported beside it.
* **Memory of 10,000 sleepers** (``sleepers_10k_rss_mb``): 10,000 agents, each running
  one task that sleeps in ``sleep_for("1h")``; the resident set size of the whole
  process (``VmRSS``) once all of them sleep, and, for scale, after imports alone.

Targets: timer lateness p99 < 5 ms; 10,000 sleepers < 500 MB RSS in total.

Run it with ``python benchmarks/wake.py``. The last line of its output is one JSON
object with the headline figures (units in the key names).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wakeful.toolkit.context import ToolContext  # tools' type hints resolve here

RERUN = "python benchmarks/wake.py"
TIMERS = 1000
WAITERS = 1000
SLEEPERS = 10_000
CHILD_TIMEOUT_S = 240.0


class BenchmarkError(RuntimeError):
    """A run did not end as expected."""


def rss_mb() -> float:
    """The current resident set size of this process, in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchmarkError("no VmRSS in /proc/self/status")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def make_runtime(directory: Path, agents: int, tools: list[Any], *,
                 max_concurrent_tasks: int, call: dict[str, Any] | None = None) -> Any:
    """``agents`` agents whose tasks make one tool call (``call``; default: the bench tool
    with the task's instruction), then finish."""
    from wakeful import AgentDefinition, ModelRegistry, Runtime, ScriptedModel, SQLiteStore
    from wakeful.tools.builtin import default_tools

    model = ScriptedModel.from_steps([
        {"say": "sleep", "tool_calls": [call or {"tool": "bench",
                                                 "args": {"arg": "{instruction}"}}]},
        {"say": "up"}])
    models = ModelRegistry(directory)
    models.register("bench", model)
    registry = default_tools()
    for extra in tools:
        registry.register(extra)
    definitions = [AgentDefinition(name=f"a{i:05d}", model="bench",
                                   tools=["bench", "sleep_for"], answer_mail=False,
                                   max_concurrent_tasks=max_concurrent_tasks)
                   for i in range(agents)]
    return Runtime(store=SQLiteStore(directory / "wakeful.db"), models=models,
                   tools=registry, agents=definitions, poll_interval_s=5.0)


async def check_done(runtime: Any, n: int) -> None:
    from wakeful.core.states import TaskState

    tasks = await runtime.store.list_tasks()
    bad = [t for t in tasks if t.state is not TaskState.DONE]
    if len(tasks) != n or bad:
        raise BenchmarkError(f"{len(tasks)} tasks, {len(bad)} not done "
                             f"(first: {bad[0].error if bad else '-'})")


async def measure_lateness(burst: bool) -> dict[str, Any]:
    """1,000 sleeping tasks on durable timers due within one second (or at once)."""
    from wakeful.core.conditions import Who
    from wakeful.toolkit.registry import tool

    fired: list[float] = []
    resumed: list[float] = []

    @tool
    async def bench(ctx: ToolContext, arg: str) -> str:
        due = float(arg)
        pending = await ctx.runtime.waits.prepare(Who(ctx.agent, ctx.task_id), until=due,
                                                  key=f"bench:{ctx.task_id}")
        async with ctx.waiting(pending.describe()):
            wake = await pending.wait()
            resumed.append((time.time() - due) * 1000)
        fired.append((wake.at - due) * 1000)
        return "ok"

    with tempfile.TemporaryDirectory(prefix="wakeful-wake-") as tmp:
        runtime = make_runtime(Path(tmp), 10, [bench], max_concurrent_tasks=TIMERS)
        await runtime.start()
        start = time.time() + 3.0
        dues = [start + (0.0 if burst else i / TIMERS) for i in range(TIMERS)]
        await asyncio.gather(*(runtime.create_task(f"a{i % 10:05d}", repr(due))
                               for i, due in enumerate(dues)))
        while runtime.waits.sleepers() < TIMERS:
            if time.time() > start:
                raise BenchmarkError("the sleepers were not all asleep before the first "
                                     "due time")
            await asyncio.sleep(0.01)
        await runtime.wait_idle(60)
        await check_done(runtime, TIMERS)
        await runtime.stop()
    if len(resumed) != TIMERS:
        raise BenchmarkError(f"{len(resumed)} of {TIMERS} sleepers woke")
    if min(resumed) < 0:
        raise BenchmarkError(f"a sleeper woke {-min(resumed):.3f} ms early")
    return {"kind": "burst" if burst else "spread", "p50_ms": percentile(resumed, 50),
            "p99_ms": percentile(resumed, 99), "max_ms": max(resumed),
            "fired_p99_ms": percentile(fired, 99)}


async def measure_events() -> dict[str, Any]:
    """1,000 tasks waiting for their own mail; mails sent one at a time."""
    from wakeful.core.conditions import MailArrives, Who
    from wakeful.core.mail import MailFilter
    from wakeful.toolkit.registry import tool

    woken: dict[str, asyncio.Future[tuple[float, float]]] = {}

    @tool
    async def bench(ctx: ToolContext, arg: str) -> str:
        wanted = MailArrives(MailFilter.of(subject=arg))
        pending = await ctx.runtime.waits.prepare(Who(ctx.agent, ctx.task_id), [wanted],
                                                  key=f"bench:{ctx.task_id}")
        async with ctx.waiting(pending.describe()):
            wake = await pending.wait()
            woken[arg].set_result((wake.at, time.time()))
        return "ok"

    with tempfile.TemporaryDirectory(prefix="wakeful-wake-") as tmp:
        runtime = make_runtime(Path(tmp), 10, [bench], max_concurrent_tasks=WAITERS)
        await runtime.start()
        loop = asyncio.get_running_loop()
        subjects = [f"go-{i:04d}" for i in range(WAITERS)]
        for subject in subjects:
            woken[subject] = loop.create_future()
        await asyncio.gather(*(runtime.create_task(f"a{i % 10:05d}", s)
                               for i, s in enumerate(subjects)))
        deadline = time.monotonic() + 60
        while runtime.waits.sleepers() < WAITERS:
            if time.monotonic() > deadline:
                raise BenchmarkError("the waiters were not all waiting after 60 s")
            await asyncio.sleep(0.01)
        hook: list[float] = []
        send: list[float] = []
        for i, subject in enumerate(subjects):
            sent_at = time.time()
            await runtime.mailbox.send("person:bench", f"a{i % 10:05d}", subject, "go")
            signalled, resumed = await asyncio.wait_for(woken[subject], 10)
            hook.append((resumed - signalled) * 1000)
            send.append((resumed - sent_at) * 1000)
        await runtime.wait_idle(60)
        await check_done(runtime, WAITERS)
        await runtime.stop()
    return {"p50_ms": percentile(hook, 50), "p99_ms": percentile(hook, 99),
            "send_p50_ms": percentile(send, 50), "send_p99_ms": percentile(send, 99)}


async def measure_memory() -> dict[str, Any]:
    """10,000 agents, each with one task asleep in sleep_for('1h')."""
    from wakeful.toolkit.registry import tool

    import_mb = rss_mb()

    @tool
    async def bench(ctx: ToolContext, arg: str) -> str:
        return "unused"

    with tempfile.TemporaryDirectory(prefix="wakeful-wake-") as tmp:
        runtime = make_runtime(Path(tmp), SLEEPERS, [bench], max_concurrent_tasks=1,
                               call={"tool": "sleep_for", "args": {"duration": "1h"}})
        t0 = time.perf_counter()
        await runtime.start()
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await asyncio.gather(*(runtime.create_task(name, "nap") for name in runtime.agents))
        deadline = time.monotonic() + 180
        while runtime.waits.sleepers() < SLEEPERS:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"only {runtime.waits.sleepers()} of {SLEEPERS} asleep "
                                     "after 180 s")
            await asyncio.sleep(0.05)
        asleep_s = time.perf_counter() - t0
        await asyncio.sleep(0.5)
        total = rss_mb()
        timers = len(runtime.scheduler.active())
        tasks = len(asyncio.all_tasks())
        t0 = time.perf_counter()
        await runtime.stop()
        stop_s = time.perf_counter() - t0
    if timers != SLEEPERS:
        raise BenchmarkError(f"{timers} timers for {SLEEPERS} sleepers")
    return {"rss_mb": total, "import_rss_mb": import_mb, "start_s": start_s,
            "asleep_s": asleep_s, "stop_s": stop_s, "asyncio_tasks": tasks}


PARTS = {"spread": lambda: measure_lateness(False), "burst": lambda: measure_lateness(True),
         "events": measure_events, "memory": measure_memory}


def run_child(part: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", part]
    try:
        proc = subprocess.run(command, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{part}: no result after {CHILD_TIMEOUT_S:.0f} s") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BenchmarkError(f"{part}: the child process failed (exit {proc.returncode}):\n"
                             f"{proc.stderr.strip()[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def show(spread: dict[str, Any], burst: dict[str, Any], events: dict[str, Any],
         memory: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table(title="Wakeful: waking sleepers (real runtime, SQLite, real clock)")
    for column in ("measure", "p50 ms", "p99 ms", "max ms", "note"):
        table.add_column(column, justify="left" if column in ("measure", "note") else "right")
    table.add_row(f"timer lateness, {TIMERS:,} due within one second",
                  f"{spread['p50_ms']:.3f}", f"{spread['p99_ms']:.3f}",
                  f"{spread['max_ms']:.3f}", f"fired p99 {spread['fired_p99_ms']:.3f} ms "
                  "(target p99 < 5 ms)")
    table.add_row(f"timer lateness, {TIMERS:,} due at the same instant",
                  f"{burst['p50_ms']:.3f}", f"{burst['p99_ms']:.3f}", f"{burst['max_ms']:.3f}",
                  "the last woken waits for the others")
    table.add_row(f"event wake (mail arrives -> waiter runs), {WAITERS:,} waiters",
                  f"{events['p50_ms']:.3f}", f"{events['p99_ms']:.3f}", "",
                  f"from send(), commit included: p50 {events['send_p50_ms']:.3f}, "
                  f"p99 {events['send_p99_ms']:.3f} ms")
    console.print(table)
    console.print(
        f"{SLEEPERS:,} agents, each with a task asleep in sleep_for('1h'): "
        f"{memory['rss_mb']:.0f} MB RSS for the whole process ({memory['import_rss_mb']:.0f} MB "
        f"after imports; target < 500 MB); all asleep {memory['asleep_s']:.1f} s after their "
        f"tasks were created; start {memory['start_s']:.1f} s, stop {memory['stop_s']:.1f} s; "
        f"{memory['asyncio_tasks']:,} asyncio tasks (one per sleeping task and per agent, "
        "one scheduler sleeper).", soft_wrap=True)
    console.print(f"Rerun: {RERUN}", soft_wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--one", choices=sorted(PARTS), help="measure one part here and "
                        "print one JSON line")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(asyncio.run(PARTS[args.one]())), flush=True)
        return
    try:
        spread, burst, events, memory = (run_child(p) for p in ("spread", "burst", "events",
                                                                 "memory"))
    except BenchmarkError as exc:
        sys.exit(f"benchmark failed: {exc}")
    show(spread, burst, events, memory)
    print(json.dumps({
        "timer_lateness_p99_ms": round(spread["p99_ms"], 3),
        "timer_lateness_p50_ms": round(spread["p50_ms"], 3),
        "timer_lateness_burst_p99_ms": round(burst["p99_ms"], 3),
        "event_wake_p99_ms": round(events["p99_ms"], 3),
        "event_wake_p50_ms": round(events["p50_ms"], 3),
        "event_wake_from_send_p99_ms": round(events["send_p99_ms"], 3),
        "sleepers_10k_rss_mb": round(memory["rss_mb"], 1),
        "sleepers_10k_import_rss_mb": round(memory["import_rss_mb"], 1),
    }), flush=True)


if __name__ == "__main__":
    main()
