"""Chaos benchmark: three workers on one SQLite project, at least 30 random SIGKILLs
(and some SIGSTOPs past the agents' leases), then the recorded history checked.

Run: python benchmarks/chaos.py [--workers 3] [--jobs 700] [--faults 48] [--seed N]

Prints the counts and, last, one JSON line. Targets: double_runs, lost_mails,
duplicate_effects and stale_writes all 0; model_calls_per_step 1.0.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from wakeful.testing.chaos import Chaos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=700)
    parser.add_argument("--faults", type=int, default=48)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    with tempfile.TemporaryDirectory(prefix="wakeful-chaos-") as folder:
        report = Chaos(Path(folder), workers=args.workers, jobs=args.jobs,
                       faults=args.faults, seed=seed, kill_share=0.75,
                       deadline_s=270).run()
    data = report.as_dict()
    print(f"seed {seed}: {report.workers} workers, {report.kills} SIGKILLs, {report.stops} "
          f"SIGSTOPs, {report.tasks} tasks, {report.mails} mails, {report.steps} steps, "
          f"{report.tool_calls} tool calls, {report.seconds} s")
    print(f"double runs {report.double_runs}, lost tasks {report.lost_tasks}, lost mails "
          f"{report.lost_mails}, duplicate effects {report.duplicate_effects}, stale writes "
          f"{report.stale_writes}, re-run interrupted calls {report.reruns}, reclaimed "
          f"{report.reclaimed}, model calls per step {report.model_calls_per_step}")
    for problem in report.problems:
        print("  problem:", problem)
    print(f"rerun: python benchmarks/chaos.py --seed {seed}")
    summary = {k: data[k] for k in ("kills", "stops", "workers", "tasks", "mails", "steps",
                                    "tool_calls", "double_runs", "lost_tasks", "lost_mails",
                                    "duplicate_effects", "stale_writes", "reruns",
                                    "reclaimed", "model_calls_per_step", "finished")}
    summary["seconds"] = report.seconds
    summary["seed"] = seed
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
