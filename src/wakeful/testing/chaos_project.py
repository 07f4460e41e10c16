"""The project a chaos run drives, and the worker process it kills.

A small team on the scripted model, busy with every kind of traffic whose promise is
"nothing lost, nothing done twice": delegation (``boss`` delegates to ``helper`` and
waits for the result mail), locks with fencing (``helper`` appends to one shared file
under a write lock whose token it writes down), mail taken with ``ack: true`` (``clerk``
sweeps the boss's notes on a 1-second schedule) and request/reply through the
responder (people's mail to ``clerk`` is answered once each).

``python -m wakeful.testing.chaos_project DIR LOG`` runs one worker on the project in
DIR, appending one line per model call to LOG (``task step pid``) the moment the
reply arrives, before it is stored: the checker compares those with the steps the
store holds. Plain ``os.write`` on an ``O_APPEND`` file survives SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

PEOPLE_MAILS = 6

BOSS = {"latency_ms": 5, "scripts": [{"steps": [
    {"say": "delegating", "tool_calls": [
        {"tool": "delegate_task", "args": {"agent": "helper",
                                           "instruction": "help {instruction}"}}]},
    {"say": "noting", "tool_calls": [
        {"tool": "send_mail", "args": {"to": "clerk", "subject": "note {instruction}",
                                       "body": "{instruction} finished"}}]},
    {"say": "boss done {instruction}"},
]}]}

HELPER = {"latency_ms": 5, "scripts": [{"steps": [
    {"say": "locking", "tool_calls": [
        {"tool": "acquire_lock", "args": {"resource": "file:shared.txt", "wait_s": 120,
                                          "lease_s": 4}}]},
    {"say": "writing", "tool_calls": [
        {"tool": "append_file", "args": {"path": "shared.txt",
                                         "text": "{instruction} {last_tool_result}"}}]},
    {"say": "releasing", "tool_calls": [
        {"tool": "release_lock", "args": {"resource": "file:shared.txt"}}]},
    {"say": "helped {instruction}"},
]}]}

CLERK = {"latency_ms": 5, "scripts": [
    {"match": "sweep", "steps": [
        {"say": "checking", "tool_calls": [
            {"tool": "check_mail", "args": {"sender": "boss", "ack": True, "limit": 5}}]},
        {"say": "swept"},
    ]},
    {"steps": [{"say": "answered"}]},
]}

# What each kind of task says, in order: a committed conversation must be exactly this.
EXPECTED_SAYS = {
    "boss": ["delegating", "noting", "boss done {instruction}"],
    "helper": ["locking", "writing", "releasing", "helped {instruction}"],
    "clerk-sweep": ["checking", "swept"],
    "clerk-answer": ["answered"],
}


def write_project(root: Path, jobs: int, lease_s: float = 2.0,
                  store_url: str | None = None) -> None:
    """A chaos project with ``jobs`` boss tasks queued on its first run."""
    (root / "agents").mkdir(parents=True, exist_ok=True)
    (root / "scripts").mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "name": "chaos",
        "poll_interval_s": 0.2,
        "worker_lease_s": lease_s,
        "startup_tasks": [{"agent": "boss", "instruction": f"job-{k}"} for k in range(jobs)],
        "mailbox": {"visibility_timeout_s": 5, "max_deliveries": 1000,
                    "request_timeout_s": 3600},
        "resources": {"auto_pause_timeout_s": 120, "poll_interval_s": 0.1},
    }
    if store_url is not None:
        config["store"] = {"url": store_url}
    (root / "wakeful.yaml").write_text(yaml.safe_dump(config))
    agents = {
        "boss": {"tools": ["delegate_task", "send_mail"], "max_concurrent_tasks": 8},
        "helper": {"tools": ["acquire_lock", "append_file", "release_lock"],
                   "max_concurrent_tasks": 8},
        "clerk": {"tools": ["check_mail"], "max_concurrent_tasks": 4,
                  "schedule": [{"every": "1s", "instruction": "sweep mail",
                                "misfire": "once"}]},
    }
    scripts = {"boss": BOSS, "helper": HELPER, "clerk": CLERK}
    for name, fields in agents.items():
        agent = {"name": name, "role": name, "instructions": f"You are the {name}.",
                 "model": f"scripted:{name}", "max_steps": 20,
                 "restart": {"policy": "never"}, **fields}
        (root / "agents" / f"{name}.yaml").write_text(yaml.safe_dump(agent))
        (root / "scripts" / f"{name}.yaml").write_text(yaml.safe_dump(scripts[name]))


async def _send_people_mail(runtime: object) -> None:
    """People's mail to the clerk, keyed: every worker start sends them; the keys keep
    one of each."""
    from wakeful.runtime.runtime import Runtime

    assert isinstance(runtime, Runtime)
    for k in range(PEOPLE_MAILS):
        await runtime.mailbox.send("person:ops", "clerk", f"question {k}",
                                   f"what about question {k}?", idempotency_key=f"q{k}")


async def run_worker(root: Path, log: Path) -> None:
    from wakeful.core.records import Event
    from wakeful.project.loader import load_project
    from wakeful.runtime.runtime import Runtime

    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()

    def record(event: Event) -> None:
        if event.type == "model.call":
            os.write(fd, f"{event.task_id} {event.data.get('step')} {pid}\n".encode())

    runtime = Runtime.from_project(load_project(root))
    runtime.events.add_listener(record)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await runtime.start()
    try:
        await _send_people_mail(runtime)
        print("READY", flush=True)
        await stop.wait()
    finally:
        await runtime.stop()
        os.close(fd)


if __name__ == "__main__":
    from wakeful.core.loop import run

    run(run_worker(Path(sys.argv[1]), Path(sys.argv[2])))
