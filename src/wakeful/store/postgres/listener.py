"""The notification connection: LISTEN on every doorbell topic, ring local bells.

A notification is only a doorbell (see :mod:`wakeful.store.bells`). The connection is
checked every few seconds; when it is lost it is opened again with backoff, and every
bell is rung once it is back, so that listeners read what they may have missed
(catch-up) instead of trusting that nothing happened meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog

from wakeful.core.backoff import next_wait
from wakeful.errors import StoreError
from wakeful.store.bells import TOPICS, Bells
from wakeful.store.postgres.connect import Target, connect

log = structlog.get_logger("wakeful.store")
CHANNEL_PREFIX = "wakeful_"
CHECK_EVERY_S = 2.0


def channel(topic: str) -> str:
    return CHANNEL_PREFIX + topic


class Listener:
    def __init__(self, target: Target, bells: Bells) -> None:
        self.target = target
        self.bells = bells
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.reconnects = 0

    async def start(self) -> None:
        await self._listen()
        self._task = asyncio.create_task(self._supervise(), name="wakeful-pg-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 5)
            self._conn = None

    def _heard(self, _conn: Any, _pid: int, name: str, _payload: object) -> None:
        self.bells.ring([name.removeprefix(CHANNEL_PREFIX)])

    def _terminated(self, _conn: Any) -> None:
        self._lost.set()

    async def _listen(self) -> None:
        conn = await connect(self.target, timeout=5.0)
        for topic in TOPICS:
            await conn.add_listener(channel(topic), self._heard)
        conn.add_termination_listener(self._terminated)
        self._conn = conn

    async def _supervise(self) -> None:
        wait = 0.0
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel
            # that stops this loop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_EVERY_S):
                    await self._lost.wait()
            if not self._lost.is_set() and self._conn is not None:
                try:
                    async with asyncio.timeout(CHECK_EVERY_S):
                        await self._conn.fetchval("SELECT 1")
                    continue
                except Exception as exc:  # silent loss: noticed by the check
                    log.warning("store: notification connection lost", error=repr(exc))
            self._lost.clear()
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            while self._conn is None:
                try:
                    await self._listen()
                except StoreError as exc:
                    wait = next_wait(wait)
                    log.debug("store: notification reconnect failed", error=str(exc))
                    await asyncio.sleep(wait)
            wait = 0.0
            self.reconnects += 1
            self.bells.ring_all()  # catch up on whatever was missed meanwhile
