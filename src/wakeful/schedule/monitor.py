"""What a monitor looks for: tasks that are stuck, tasks that loop, and failures.

* **Stuck**: a running or waiting task that has done nothing (no event of its own) for
  ``stuck_after_s``. A task asleep on purpose (``sleep_for``/``sleep_until``) is not
  stuck until its wake-up is overdue.
* **Looping**: a task that made the same tool call (same name, same arguments)
  ``repeated_calls`` times in a row.
* **Failed**: a task failure recorded in the event log (seen even if a retry has
  started since), or an agent whose loop failed.

Each problem has a ``key`` naming it (the task, and the step it is stuck at, the call it
repeats, the failure event), so an alert about it is sent once: the alert's mail carries
the key as its idempotency key, from the monitor agent's own address, and the mailbox
drops a repeat. A monitor that wakes every few seconds does not repeat itself.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from wakeful.core.states import AgentState
from wakeful.schedule.plans import MISFIRE_GRACE_S

if TYPE_CHECKING:
    from wakeful.toolkit.context import ToolContext

ProblemKind = Literal["stuck", "looping", "failed"]
FAILURE_LOOKBACK = 200  # task.failed events looked at, newest first


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    agent: str
    task_id: str | None
    detail: str
    key: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def subject(self) -> str:
        where = f"{self.agent}/{self.task_id}" if self.task_id else self.agent
        return f"[{self.kind}] {where}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:12]


async def find_problems(ctx: ToolContext, agents: Iterable[str], *, stuck_after_s: float,
                        repeated_calls: int) -> list[Problem]:
    """Stuck, looping and failed work of ``agents`` right now."""
    watched = set(agents)
    progress, team = ctx.progress, ctx.team
    now = time.time()
    clock_now = ctx.clock.now()
    problems: list[Problem] = []
    for name in sorted(watched):
        saved = team.record(name)
        if saved is None:
            continue
        if saved.state is AgentState.FAILED:
            problems.append(Problem(
                "failed", name, None, f"agent {name} failed: {saved.reason}",
                f"agent-failed:{name}:{saved.updated_at:.3f}"))
        for record in team.running_tasks(name):
            waiting = ctx.waits.waiting(record.id)
            overdue = waiting is not None and waiting.until is not None and \
                clock_now > waiting.until + max(MISFIRE_GRACE_S, stuck_after_s)
            asleep = waiting is not None and waiting.sleeping and not overdue
            idle = now - progress.last_activity(record)
            if not asleep and idle >= stuck_after_s:
                on = f", waiting for {waiting.what}" if waiting else (
                    f", {record.state.value}")
                problems.append(Problem(
                    "stuck", name, record.id,
                    f"task {record.id} of {name} has made no progress for {idle:.0f} s "
                    f"(step {record.step}{on}): {record.instruction[:100]}",
                    f"stuck:{record.id}:{record.step}"))
            streak = progress.streak(record.id)
            if streak is not None and streak.times >= repeated_calls:
                problems.append(Problem(
                    "looping", name, record.id,
                    f"task {record.id} of {name} called {streak.tool}({streak.arguments[:120]}) "
                    f"{streak.times} times in a row",
                    f"loop:{record.id}:{_digest(streak.tool, streak.arguments)}"))
    for event in await team.events(types=["task.failed"], newest=True,
                                   limit=FAILURE_LOOKBACK):
        if event.agent not in watched:
            continue
        data = event.data
        retry = " (a retry may follow)" if data.get("retryable") else ""
        problems.append(Problem(
            "failed", event.agent or "", event.task_id,
            f"task {event.task_id} of {event.agent} failed ({data.get('kind')}) at step "
            f"{data.get('step')}: {str(data.get('error'))[:300]}{retry}",
            f"failed:{event.id}"))
    return problems


def summary(problems: list[Problem], agents: int) -> str:
    if not problems:
        return f"all {agents} agents healthy: nothing stuck, looping or failing"
    kinds = {k: sum(1 for p in problems if p.kind == k) for k in ("stuck", "looping", "failed")}
    found = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    return f"{len(problems)} problems across {agents} agents ({found})"
