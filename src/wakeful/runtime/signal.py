"""A broadcast "something changed" signal for many waiters."""

from __future__ import annotations

import asyncio


class Signal:
    """Each :meth:`wait` resumes at the next :meth:`fire`; no waiter can miss one by
    racing another (unlike clearing a shared ``asyncio.Event``)."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        finally:
            if future in self._waiters:
                self._waiters.remove(future)

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)
