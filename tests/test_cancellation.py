"""Cancellation reaches every background loop, so a runtime's stop always ends.

Found by a hang in CI: a runtime's stop waited forever for its store watcher, which
had been cancelled just as its doorbell rang; Python 3.11's ``asyncio.wait_for``
swallowed that cancel and the watcher went on looping.
"""

from __future__ import annotations

import asyncio

from wakeful.core.scope import TaskScope
from wakeful.store.bells import Bells


async def test_a_listener_cancelled_as_its_bell_rings_stops() -> None:
    bells = Bells()
    subscription = bells.subscribe(["tasks"])

    async def listen() -> None:
        while True:
            await subscription.wait(30)

    for _ in range(50):  # the ring and the cancel land in the same turn of the loop
        task = asyncio.create_task(listen())
        for _ in range(3):
            await asyncio.sleep(0)
        bells.ring(["tasks"])
        await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "the cancelled listener went on waiting for its bell"
        assert task.cancelled()


async def test_a_scope_closes_even_if_a_child_swallows_its_cancel() -> None:
    scope = TaskScope("test")
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()  # as wait_for on 3.11 may do: the cancel is lost
        await asyncio.Event().wait()  # ...and the child waits again

    child = scope.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    await scope.aclose()
    assert swallowed.is_set() and child.cancelled()
    assert len(scope) == 0
