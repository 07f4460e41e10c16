"""The timers family port: durable timers and waits (schedules, sleeps, wake-ups).

Contracts: each due time fires exactly once, whoever sees it come due (a firing is a
compare-and-set on the timer's due time, written in one transaction with the tasks it
starts and its ``timer.fired`` event); every awaited write is durable on return.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from wakeful.core.timers import Claim, Timer


class TimerStore(Protocol):
    async def insert(self, timer: Timer) -> Timer:
        """Store a timer; one with the key of an existing one returns that one."""

    async def by_key(self, key: str) -> Timer | None: ...

    async def get(self, timer_id: str) -> Timer | None: ...

    async def active(self) -> list[Timer]: ...

    async def listing(self, *, agent: str | None = None, task_id: str | None = None,
                      include_ended: bool = False, limit: int = 1000) -> list[Timer]: ...

    async def schedule_keys(self, agent: str) -> list[tuple[str, str]]:
        """(id, key) of the agent's schedules registered from its agent file."""

    async def claim_firings(self, claims: Sequence[Claim]) -> list[bool]:
        """Fire each claim if its timer is still due at ``claim.due``; which won."""

    def end_waits_nowait(self, ended: Iterable[tuple[str, str, str, float]]) -> None:
        """Record ended waits with the next commit (not awaited)."""

    def forget_task_nowait(self, task_id: str) -> None: ...

    async def cancel(self, timer_id: str, when: float, why: str) -> bool: ...

    async def cancel_keys(self, keys: Iterable[str], when: float, why: str) -> None: ...
