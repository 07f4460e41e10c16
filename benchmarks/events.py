"""Benchmark: what the event log costs.

Figures:
* ``events_per_s``: events emitted into the event log and committed to a real SQLite
  store (WAL, group commit), measured from the first emit until everything is flushed.
* ``step_ms_logging_on`` / ``step_ms_logging_off``: the runtime's time per agent step (a
  scripted model with zero latency, one tool call per step), with events persisted to
  the store versus not persisted at all, measured in the same run; their ratio is
  ``step_overhead_ratio_logging_on_vs_off``. Every step emits several events (task
  state, model call, tool call), so this is the event log's share of a step's cost.

Why: everything a person debugs with is built on the event log, so it must be cheap
enough to leave on. Rerun: ``python benchmarks/events.py``. The last line of output is
one JSON object of the figures.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from wakeful.core.states import TaskState
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel
from wakeful.observe.events import EventLog
from wakeful.project.definitions import AgentDefinition
from wakeful.runtime.runtime import Runtime
from wakeful.store.sqlite import SQLiteStore

EVENTS = 200_000
STEPS = 400
TASKS = 10
ROUNDS = 3


async def events_per_second(folder: Path) -> float:
    store = SQLiteStore(folder / "events.db")
    await store.open()
    log = EventLog(store, run_id="bench")
    started = time.perf_counter()
    for i in range(EVENTS):
        log.emit("bench.event", agent="a", task_id="t", data={"i": i})
        if i % 5_000 == 0:
            await asyncio.sleep(0)  # let the writer run, as a live runtime would
    await store.flush()
    elapsed = time.perf_counter() - started
    stored = await store.query_events(newest=True, limit=1)
    await store.close()
    assert stored and stored[0].data["i"] == EVENTS - 1, "not every event was stored"
    return EVENTS / elapsed


async def step_time_ms(folder: Path, persist: bool, round_no: int) -> float:
    steps = [{"say": f"step {i}", "tool_calls": [{"tool": "word_count",  # distinct calls:
                                                   "args": {"text": f"a b {i}"}}]}  # no loop
             for i in range(STEPS - 1)] + [{"say": "done"}]
    models = ModelRegistry(folder)
    models.register("m", ScriptedModel.from_steps(steps))
    agent = AgentDefinition(name="a", model="m", tools=["word_count"],
                            max_steps=STEPS + 1, max_concurrent_tasks=TASKS)
    runtime = Runtime(store=SQLiteStore(folder / f"steps-{persist}-{round_no}.db"),
                      models=models, agents=[agent])
    runtime.events.persist = persist
    await runtime.start()
    started = time.perf_counter()
    tasks = [await runtime.create_task("a", f"job {i}") for i in range(TASKS)]
    await runtime.wait_idle(300)
    elapsed = time.perf_counter() - started
    for task in tasks:
        record = await runtime.get_task(task.id)
        assert record.state is TaskState.DONE and record.step == STEPS, record
    await runtime.stop()
    return elapsed * 1000 / (STEPS * TASKS)


async def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rate = await events_per_second(folder)
        on: list[float] = []
        off: list[float] = []
        for round_no in range(ROUNDS):  # interleaved, so drift affects both alike
            off.append(await step_time_ms(folder, False, round_no))
            on.append(await step_time_ms(folder, True, round_no))
    on_ms, off_ms = statistics.median(on), statistics.median(off)
    return {
        "events_per_s": round(rate),
        "step_ms_logging_on": round(on_ms, 4),
        "step_ms_logging_off": round(off_ms, 4),
        "step_overhead_ratio_logging_on_vs_off": round(on_ms / off_ms, 3),
    }


if __name__ == "__main__":
    figures = asyncio.run(main())
    print(f"Event log: {EVENTS:,} events committed to SQLite: "
          f"{figures['events_per_s']:,.0f} events/s")
    print(f"Agent step ({TASKS} tasks x {STEPS} steps, zero-latency model, median of "
          f"{ROUNDS}): {figures['step_ms_logging_on']:.3f} ms with events persisted, "
          f"{figures['step_ms_logging_off']:.3f} ms without "
          f"(ratio {figures['step_overhead_ratio_logging_on_vs_off']:.2f})")
    print("Rerun: python benchmarks/events.py")
    sys.stdout.write(json.dumps(figures) + "\n")
