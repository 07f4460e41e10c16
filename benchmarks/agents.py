"""Benchmark: how Wakeful scales from 1 to 1,000 concurrent agents.

What is measured
----------------
For N in 1, 100 and 1,000 agents, each agent gets exactly ONE task, and that task is
exactly one model call to a scripted model with 200 ms of simulated latency
(``ScriptedModel.from_steps([{"say": "done"}], latency_ms=200)``). The store is a real
SQLite file (WAL, group commit) in a temporary directory. For each N we record:

* ``wall_s``: from the first ``runtime.create_task`` to ``runtime.wait_idle`` returning,
  i.e. until every task has finished. All N tasks are created concurrently (one
  ``create_task`` per agent, gathered), as N independent callers would.
* ``create_s``: how long the N ``create_task`` calls took to return (inside ``wall_s``).
* ``start_s`` / ``stop_s``: ``runtime.start()`` (opens the store, registers and launches
  N agents) and ``runtime.stop()`` (interrupts, cancels, flushes and closes).
* ``peak_rss_mb``: the process's peak resident set size, and ``import_rss_mb``, the peak
  after imports but before the runtime exists, so the runtime's own share is visible.
* ``store_batches`` / ``store_writes``: the SQLite store's counters (``store.batches``,
  ``store.writes``), both within the wall window and over the whole run. Writes per
  batch shows group commit at work: under load, many writes share one transaction.

Every task is checked to have ended ``done`` with the scripted reply; any other outcome
aborts the benchmark with an error.

Why
---
The model call is the only "work" and it is a fixed 200 ms sleep, so the ideal wall time
is 0.2 s at every N. Whatever exceeds that is the runtime's own overhead (scheduling,
state changes, durable writes, events), and how it grows with N is what this shows:
1,000 agents should cost little more than one.

Each N runs in a fresh subprocess of this script (``--one N`` prints one JSON line) so
that peak RSS is measured per size and not inherited from a larger run.

Run it with ``python benchmarks/agents.py``. The last line of its output is one JSON
object with the headline figures (units in the key names).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = (1, 100, 1000)
MODEL_LATENCY_MS = 200
MODEL_SPEC = "bench"
REPLY = "done"
IDLE_TIMEOUT_S = 120.0
CHILD_TIMEOUT_S = 240.0
RERUN = "python benchmarks/agents.py"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB; macOS reports bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class BenchmarkError(RuntimeError):
    """A run did not end as expected (a task not done, a child that failed)."""


async def measure(n: int) -> dict[str, Any]:
    """Run N agents with one task each; return the figures for this size."""
    from wakeful import AgentDefinition, ModelRegistry, Runtime, ScriptedModel, SQLiteStore
    from wakeful.core.states import TaskState

    import_rss = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="wakeful-bench-") as tmp:
        directory = Path(tmp)
        model = ScriptedModel.from_steps([{"say": REPLY}], latency_ms=MODEL_LATENCY_MS)
        models = ModelRegistry(directory)
        models.register(MODEL_SPEC, model)
        names = [f"agent-{i:04d}" for i in range(n)]
        agents = [AgentDefinition(name=name, model=MODEL_SPEC) for name in names]
        store = SQLiteStore(directory / "wakeful.db")
        runtime = Runtime(store=store, models=models, agents=agents)

        t0 = time.perf_counter()
        await runtime.start()
        start_s = time.perf_counter() - t0
        batches0, writes0 = store.batches, store.writes

        t0 = time.perf_counter()
        records = await asyncio.gather(
            *(runtime.create_task(name, f"task {i}") for i, name in enumerate(names)))
        create_s = time.perf_counter() - t0
        await runtime.wait_idle(IDLE_TIMEOUT_S)
        wall_s = time.perf_counter() - t0
        run_batches, run_writes = store.batches - batches0, store.writes - writes0

        # Verify from the durable store, not from memory: every task must be done.
        stored = {r.id: r for r in await store.list_tasks()}
        problems = []
        for record in records:
            found = stored.get(record.id)
            if found is None:
                problems.append(f"{record.id}: not in the store")
            elif found.state is not TaskState.DONE or found.result != REPLY:
                problems.append(f"{record.id} ({found.agent}): state={found.state.value} "
                                f"result={found.result!r} error={found.error!r}")
        if len(stored) != n:
            problems.append(f"the store holds {len(stored)} tasks, expected {n}")
        if model.calls != n:
            problems.append(f"the model was called {model.calls} times, expected {n}")

        t0 = time.perf_counter()
        await runtime.stop()
        stop_s = time.perf_counter() - t0
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise BenchmarkError(f"{n} agents: {len(problems)} problem(s):\n  {shown}{more}")

        return {
            "agents": n,
            "wall_s": wall_s,
            "create_s": create_s,
            "start_s": start_s,
            "stop_s": stop_s,
            "peak_rss_mb": peak_rss_mb(),
            "import_rss_mb": import_rss,
            "run_batches": run_batches,
            "run_writes": run_writes,
            "store_batches": store.batches,
            "store_writes": store.writes,
        }


def run_child(n: int) -> dict[str, Any]:
    """Measure one size in a fresh interpreter; return its JSON figures."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one", str(n)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{n} agents: no result after {CHILD_TIMEOUT_S:.0f} s") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BenchmarkError(f"{n} agents: the child process failed "
                             f"(exit {proc.returncode}):\n{proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def show(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Wakeful: N agents x 1 task x 1 model call "
                        f"({MODEL_LATENCY_MS} ms), SQLite store")
    columns = ["agents", "wall s", "overhead s", "create s", "start s", "stop s",
               "peak RSS MB", "import RSS MB", "batches", "writes", "writes/batch",
               "all batches", "all writes"]
    for column in columns:
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            f"{r['agents']:,}",
            f"{r['wall_s']:.3f}",
            f"{r['wall_s'] - MODEL_LATENCY_MS / 1000:.3f}",
            f"{r['create_s']:.3f}",
            f"{r['start_s']:.3f}",
            f"{r['stop_s']:.3f}",
            f"{r['peak_rss_mb']:.1f}",
            f"{r['import_rss_mb']:.1f}",
            f"{r['run_batches']:,}",
            f"{r['run_writes']:,}",
            f"{r['run_writes'] / max(1, r['run_batches']):.1f}",
            f"{r['store_batches']:,}",
            f"{r['store_writes']:,}",
        )
    console = Console(width=160)
    console.print(table)
    console.print(
        "wall = first create_task to wait_idle (all tasks done); overhead = wall - model "
        "latency;\nbatches/writes = store commits and writes during that window (start "
        "and stop excluded);\nall batches/writes = the store's counters over the whole "
        "run, start and stop included;\nevery task verified 'done' in the store. Each size ran in "
        "a fresh subprocess.", soft_wrap=True)
    console.print(f"Rerun: {RERUN}", soft_wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--one", type=int, metavar="N",
                        help="measure N agents in this process and print one JSON line")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(asyncio.run(measure(args.one))), flush=True)
        return
    try:
        results = [run_child(n) for n in SIZES]
    except BenchmarkError as exc:
        sys.exit(f"benchmark failed: {exc}")
    show(results)
    summary: dict[str, Any] = {"model_latency_ms": MODEL_LATENCY_MS}
    for r in results:
        n = r["agents"]
        summary[f"agents_{n}_wall_s"] = round(r["wall_s"], 4)
        summary[f"agents_{n}_peak_rss_mb"] = round(r["peak_rss_mb"], 1)
        summary[f"agents_{n}_start_s"] = round(r["start_s"], 4)
        summary[f"agents_{n}_stop_s"] = round(r["stop_s"], 4)
        summary[f"agents_{n}_store_batches"] = r["run_batches"]
        summary[f"agents_{n}_store_writes"] = r["run_writes"]
        summary[f"agents_{n}_store_batches_total"] = r["store_batches"]
        summary[f"agents_{n}_store_writes_total"] = r["store_writes"]
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
