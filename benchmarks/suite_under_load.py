"""The test suite on a busy machine: it must hold, not just pass on a quiet one.

Starts a CPU load on every core (one busy-looping process per core, two by default, as
the ``stress`` tool would), then runs the whole suite ``--runs`` times in a row and
compares the runs test by test: a test that failed in every run is *failed*, one that
failed in some runs and passed in others is *flaky*. Both should be zero.

    python benchmarks/suite_under_load.py                 # 3 runs, 2 busy cores
    python benchmarks/suite_under_load.py --runs 1 --load 4 -- -k mailbox

The slow tests run too (``WAKEFUL_RUN_SLOW=1``, as in CI; set it to 0 to leave them
out). Arguments after ``--`` go to pytest. Three runs take several times one run of
the suite (about 4 minutes each on a quiet 2-core machine), so this is the one
benchmark that takes longer than five minutes. Prints each run as it ends, then one JSON line:
``runs``, ``failed_tests``, ``flaky_tests``, ``suite_s`` (mean seconds per run),
``load_processes``, and the names behind the counts.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from multiprocessing.synchronize import Event as StopEvent
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def burn(stop: StopEvent, parent: int) -> None:
    """Keep one core busy until told to stop, or until the parent is gone (checked every
    few million steps), so no burner outlives a killed benchmark."""
    x = 0
    while not stop.is_set() and os.getppid() == parent:
        for _ in range(2_000_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def outcomes(junit: Path) -> dict[str, bool]:
    """test id -> passed, from pytest's JUnit XML (skipped tests are left out)."""
    if not junit.exists():
        return {}
    found: dict[str, bool] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        if case.find("skipped") is not None:
            continue
        found[test] = case.find("failure") is None and case.find("error") is None
    return found


def failures(junit: Path, lines: int = 40) -> dict[str, str]:
    """test id -> the end of its failure's report: printed as each run ends, since the
    run's files go with its temporary folder and a flaky failure may not come back."""
    if not junit.exists():
        return {}
    found: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        for problem in (case.find("failure"), case.find("error")):
            if problem is not None:
                text = (problem.text or problem.get("message") or "").strip().splitlines()
                found[f"{case.get('classname')}::{case.get('name')}"] = "\n".join(
                    text[-lines:])
    return found


def run_suite(index: int, pytest_args: list[str], folder: Path) -> tuple[dict[str, bool], float,
                                                                        int]:
    junit = folder / f"run-{index}.xml"
    env = {"WAKEFUL_RUN_SLOW": "1",  # the whole suite, as CI runs it
           **os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep
           + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *pytest_args]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, check=False)
    seconds = time.monotonic() - started
    tail = result.stdout.strip().splitlines()[-1:] or ["(no output)"]
    print(f"run {index}: {seconds:.1f} s, exit {result.returncode}: {tail[0]}", flush=True)
    for test, report in failures(junit).items():
        print(f"  run {index} failed {test}:", flush=True)
        print("    " + report.replace("\n", "\n    "), flush=True)
    return outcomes(junit), seconds, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--load", type=int, default=2, help="busy processes (cores loaded)")
    args, rest = parser.parse_known_args()
    pytest_args = rest[1:] if rest[:1] == ["--"] else rest
    signal.signal(signal.SIGTERM, _terminated)  # the burners are stopped on the way out
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=burn, args=(stop, os.getpid()), daemon=True)
               for _ in range(args.load)]
    for process in burners:
        process.start()
    results: list[dict[str, bool]] = []
    durations: list[float] = []
    crashed = 0
    try:
        with tempfile.TemporaryDirectory() as folder:
            for index in range(1, args.runs + 1):
                found, seconds, code = run_suite(index, pytest_args, Path(folder))
                results.append(found)
                durations.append(seconds)
                crashed += code not in (0, 1)  # 1: some tests failed; else pytest broke
                if code < 0:
                    print(f"  (run {index} was killed by signal {-code} from outside; its "
                          "results are lost)", flush=True)
    finally:
        stop.set()
        for process in burners:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    tests = set().union(*results) if results else set()
    failed = sorted(t for t in tests if all(not r.get(t, True) for r in results))
    flaky = sorted(t for t in tests if t not in failed and any(not r.get(t, True)
                                                                 for r in results))
    print(f"{len(tests)} tests; failed in every run: {len(failed)}; flaky: {len(flaky)}")
    for name in failed:
        print(f"  failed: {name}")
    for name in flaky:
        runs = [i + 1 for i, r in enumerate(results) if not r.get(name, True)]
        print(f"  flaky (failed in run {', '.join(map(str, runs))}): {name}")
    print("rerun: python benchmarks/suite_under_load.py --runs "
          f"{args.runs} --load {args.load}" + (" -- " + " ".join(pytest_args)
                                               if pytest_args else ""))
    print(json.dumps({"runs": len(results), "failed_tests": len(failed),
                      "flaky_tests": len(flaky), "suite_s": round(
                          sum(durations) / max(1, len(durations)), 1),
                      "load_processes": args.load, "tests": len(tests),
                      "pytest_crashes": crashed, "failed": failed, "flaky": flaky}))


if __name__ == "__main__":
    main()
