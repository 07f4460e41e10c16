"""What a due timer does: its misfire policy applied to the runs that came due, and the
timer of an agent file's ``schedule:`` entry (pure functions, no store, no clock).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from wakeful.core.timers import Timer
from wakeful.core.timespecs import MisfirePolicy, TimerSpec, to_timestamp
from wakeful.project.definitions import AgentDefinition, ScheduleEntry

MISFIRE_GRACE_S = 1.0
"""A run more than this late counts as missed (its timer's misfire policy applies)."""
MAX_CATCH_UP = 1000
"""Under misfire policy ``all``, at most this many missed runs fire at once."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one due timer does now: the runs it fires and when it is due next."""

    runs: list[float]  # due times fired now
    next_due: float | None
    missed: int  # runs that came due and are not fired (skip, once)


def plan(timer: Timer, now: float) -> Plan:
    """Apply the timer's misfire policy to the runs that are due at ``now``."""
    spec = timer.timer_spec
    assert spec is not None and timer.next_due is not None
    due_runs = [timer.next_due]
    following = spec.next_after(timer.next_due)
    while following is not None and following <= now and len(due_runs) < MAX_CATCH_UP:
        due_runs.append(following)
        following = spec.next_after(following)
    if following is not None and following <= now:  # beyond the catch-up bound
        following = spec.next_after(now)
    policy: MisfirePolicy = timer.misfire
    if policy == "all":
        runs = due_runs
    elif policy == "once":
        runs = [due_runs[-1]]
    else:  # skip: only a run that is on time fires, and none once several piled up
        on_time = len(due_runs) == 1 and now - due_runs[0] <= MISFIRE_GRACE_S
        runs = due_runs if on_time else []
    if timer.max_runs is not None:
        left = max(0, timer.max_runs - timer.fired)
        runs = runs[:left]
        if timer.fired + len(runs) >= timer.max_runs:
            following = None
    return Plan(runs, following, len(due_runs) - len(runs))


def schedule_spec(entry: ScheduleEntry, now: float) -> TimerSpec:
    """The timer of a ``schedule:`` entry (an interval is counted from ``now``)."""
    if entry.every is not None:
        return TimerSpec.every(entry.every, now, entry.timezone)
    if entry.cron is not None:
        return TimerSpec.cron(entry.cron, entry.timezone)
    assert entry.at is not None
    return TimerSpec.at(to_timestamp(entry.at, entry.timezone), entry.timezone)


def _entry_keys(definition: AgentDefinition) -> dict[str, ScheduleEntry]:
    keys: dict[str, ScheduleEntry] = {}
    for entry in definition.schedule:
        digest = hashlib.sha256(entry.model_dump_json().encode()).hexdigest()[:16]
        n = 0
        while f"schedule:{definition.name}:{digest}:{n}" in keys:
            n += 1
        keys[f"schedule:{definition.name}:{digest}:{n}"] = entry
    return keys
