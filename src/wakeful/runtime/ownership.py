"""This process as a worker: which agents it owns, by lease, and for how long.

Many processes may share one store (``wakeful worker``, a second ``wakeful run`` or
``wakeful serve``). The store decides who runs what: each agent is owned by one live
worker through a lease row (owner, epoch, expiry on the store's clock). A worker takes
agents nobody owns (never owned, handed over, or whose owner stopped renewing), up to
its fair share of the agents among the live workers; taking one raises its epoch and,
in the same transaction, puts back in the queue the tasks the previous owner left
running. Every write the worker makes for an agent carries its fence (owner, epoch),
so a worker that lost a lease (stopped with SIGSTOP past it, say) finds its writes
refused and stops that agent's loops. Stopping hands every agent over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import socket
from collections.abc import Awaitable, Callable

import structlog

from wakeful.core.records import AgentGrant, Fence
from wakeful.core.scope import TaskScope
from wakeful.ids import new_id
from wakeful.store.base import Store

log = structlog.get_logger("wakeful.ownership")


def process_alive(pid: int) -> bool:
    """Is process ``pid`` (on this machine) still there?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

Adopt = Callable[[list[AgentGrant]], Awaitable[None]]
Drop = Callable[[str], Awaitable[None]]


class Ownership:
    """Takes, renews, rebalances and hands over this worker's agent leases."""

    def __init__(self, store: Store, *, lease_s: float = 10.0) -> None:
        self.store = store
        self.lease_s = lease_s
        self.worker_id = new_id("w")
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.held: dict[str, int] = {}  # agent -> the epoch of this worker's lease
        self.live_workers = 1
        self._agents: Callable[[], list[str]] = list
        self._adopt: Adopt | None = None
        self._lost: Drop | None = None
        self._hand_over: Drop | None = None
        # told the number of live workers whenever it changes (they share limits)
        self.workers_changed: Callable[[int], None] = lambda workers: None
        self._scope = TaskScope("ownership")
        self._lock = asyncio.Lock()
        self._renewed = 0.0  # (event loop clock) when the last renewal that went through began

    # queries -----------------------------------------------------------
    def owns(self, agent: str) -> bool:
        return agent in self.held

    def fence(self, agent: str) -> Fence | None:
        epoch = self.held.get(agent)
        return None if epoch is None else Fence(agent, self.worker_id, epoch)

    # lifecycle ---------------------------------------------------------
    async def start(self, agents: Callable[[], list[str]], adopt: Adopt, lost: Drop,
                    hand_over: Drop) -> None:
        """Take a first share of agents now, then keep leases alive in the background."""
        self._agents, self._adopt, self._lost, self._hand_over = agents, adopt, lost, hand_over
        await self.round()
        self._scope.spawn(self._keep(), name="ownership:renew")
        self._scope.spawn(self._cut_off(), name="ownership:cut-off")

    async def _cut_off(self) -> None:
        """Cut off from the store (renewals stuck or failing) for longer than a lease:
        every lease may have lapsed and another worker may run these agents now, so
        stop their loops here and say so, without waiting to hear it from the store."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if not self.held or loop.time() - self._renewed <= self.lease_s:
                continue
            log.error("ownership: cut off from the store for longer than the lease; "
                      "stopping this worker's agents", worker=self.worker_id,
                      agents=sorted(self.held), lease_s=self.lease_s)
            for agent in sorted(self.held):
                self.held.pop(agent, None)
                assert self._lost is not None
                await self._lost(agent)

    async def stop(self) -> dict[str, int]:
        """Stop renewing; return the leases held (the caller hands them over)."""
        await self._scope.aclose()
        held, self.held = dict(self.held), {}
        return held

    async def release(self, held: dict[str, int]) -> list[str]:
        """Hand agents over in the store; returns the tasks put back in the queue."""
        if not held:
            return []
        requeued = await self.store.release_agents(self.worker_id, held)
        return requeued

    async def retire(self) -> None:
        with contextlib.suppress(Exception):
            await self.store.retire_worker(self.worker_id)

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3 * random.uniform(0.8, 1.0))
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is busy or down: try again next round
                log.warning("ownership: lease round failed", error=repr(exc))

    async def _expire_dead_neighbours(self) -> None:
        """A worker on this host whose process is gone (killed with SIGKILL) holds its
        leases no longer: end them now rather than when they lapse. A worker on another
        host is judged by its lease alone."""
        dead = [w for w, pid, host, expires_at in await self.store.list_workers()
                if w != self.worker_id and host == self.host and expires_at > 0
                and not process_alive(pid)]
        if dead:
            log.info("ownership: workers gone", workers=dead)
            await self.store.expire_workers(dead)

    async def round(self) -> None:
        """One heartbeat: renew what is held, drop what was lost, take or give back
        agents so that every live worker runs about the same number."""
        async with self._lock:
            began = asyncio.get_running_loop().time()
            await self._expire_dead_neighbours()
            live = await self.store.heartbeat(self.worker_id, self.pid, self.host,
                                              self.lease_s)
            if live != self.live_workers:
                self.live_workers = live
                self.workers_changed(live)
            if self.held:
                lost = await self.store.renew_agents(self.worker_id, dict(self.held),
                                                     self.lease_s)
                self._renewed = began
                for agent in lost:
                    self.held.pop(agent, None)
                    log.warning("ownership: lease lost", agent=agent, worker=self.worker_id)
                    assert self._lost is not None
                    await self._lost(agent)
            names = self._agents()
            fair = math.ceil(len(names) / max(1, self.live_workers))
            if len(self.held) < fair:
                free = [n for n in names if n not in self.held]
                random.shuffle(free)  # workers starting together do not all want the same
                grants = await self.store.acquire_agents(self.worker_id, free, self.lease_s,
                                                         fair - len(self.held))
                if grants and not self.held:
                    self._renewed = began  # the first leases: they run from now
                for grant in grants:
                    self.held[grant.agent] = grant.epoch
                if grants:
                    await self._take(grants)
            elif len(self.held) > fair + 1 or (len(self.held) > fair and self.live_workers > 1
                                               and random.random() < 0.5):
                extra = sorted(self.held)[: len(self.held) - fair]
                for agent in extra:
                    assert self._hand_over is not None
                    await self._hand_over(agent)  # its loops stop, still fenced
                    epoch = self.held.pop(agent)
                    await self.release({agent: epoch})

    async def _take(self, grants: list[AgentGrant]) -> None:
        """Run the agents just granted, all at once (their writes share commits). If
        that fails part way (the store cut off mid-adoption), give them all back: held
        but never started, their tasks would wait for as long as this worker lives."""
        assert self._adopt is not None and self._hand_over is not None
        try:
            await self._adopt(grants)
        except Exception as exc:
            log.warning("ownership: starting the agents taken failed; giving them back",
                        agents=[g.agent for g in grants], error=repr(exc))
            given = {}
            for grant in grants:
                await self._hand_over(grant.agent)  # stops whatever had started
                given[grant.agent] = self.held.pop(grant.agent)
            with contextlib.suppress(Exception):  # else their leases lapse
                await self.release(given)
