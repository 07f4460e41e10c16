"""The in-process gate and the wait-for graph, on their own."""

from __future__ import annotations

import asyncio

import pytest

from wakeful.core.resources import Mode, Owner, Resource
from wakeful.errors import DeadlockError
from wakeful.resources.deadlock import Wait, WaitForGraph, describe_cycle, victim_of
from wakeful.resources.gate import Gate

R, W = Mode.READ, Mode.WRITE


def file(name: str) -> Resource:
    return Resource("file", name, True)


def owner(n: int) -> Owner:
    return Owner(f"t_{n}", f"agent{n}")


async def test_a_folder_conflicts_with_what_is_inside_it_only() -> None:
    gate = Gate()
    folder, _ = gate.enter(owner(1), file("docs"), W, "lock", token=7)
    inside, blockers = gate.enter(owner(2), file("docs/a.md"), R, "auto-pause")
    assert not inside.granted
    assert [b.describe() for b in blockers] == ["file:docs held by task t_1 (agent agent1) "
                                                "with a write lock (token 7)"]
    sibling, _ = gate.enter(owner(3), file("docsx/a.md"), W, "auto-pause")
    root, _ = gate.enter(owner(4), file("."), R, "auto-pause")
    assert sibling.granted and not root.granted
    gate.release(folder)
    assert inside.granted and not root.granted  # the root reader waits for the sibling writer
    gate.release(sibling)
    assert root.granted
    await gate.wait(inside)


async def test_a_holder_does_not_queue_behind_those_waiting_for_it() -> None:
    gate = Gate()
    gate.enter(owner(1), file("docs"), W, "lock")
    waiting, _ = gate.enter(owner(2), file("docs/a.md"), W, "auto-pause")
    assert not waiting.granted
    own, blockers = gate.enter(owner(1), file("docs/a.md"), W, "auto-pause")
    assert own.granted and blockers == []
    # a read lock does not cover a write: then the holder queues like anyone else
    gate2 = Gate()
    gate2.enter(owner(1), file("x"), R, "lock")
    gate2.enter(owner(2), file("x"), W, "auto-pause")
    upgrade, blockers = gate2.enter(owner(1), file("x"), W, "auto-pause")
    assert not upgrade.granted and [b.queued for b in blockers] == [True]
    gate2.cancel(upgrade)


async def test_a_failed_wait_raises_and_leaves_the_line() -> None:
    gate = Gate()
    holder, _ = gate.enter(owner(1), Resource("kv", "k"), W, "lock")
    first, _ = gate.enter(owner(2), Resource("kv", "k"), W, "auto-pause")
    second, _ = gate.enter(owner(3), Resource("kv", "k"), R, "auto-pause")
    waiter = asyncio.create_task(gate.wait(first))
    await asyncio.sleep(0)
    assert gate.fail(first, DeadlockError("boom", []))
    with pytest.raises(DeadlockError, match="boom"):
        await waiter
    assert [r.owner for r in gate.waiters()] == [owner(3)]
    gate.release(holder)
    assert second.granted and not gate.holds_any(owner(1)) and gate.holds_any(owner(3))


async def test_cycles_are_found_and_told_from_the_youngest() -> None:
    gate = Gate()
    a, b, c = (gate.enter(owner(n), Resource("custom", x), W, "lock")[0]
               for n, x in ((1, "a"), (2, "b"), (3, "c")))
    graph = WaitForGraph()
    requests = {}
    for n, x in ((1, "b"), (2, "c")):
        requests[n] = gate.enter(owner(n), Resource("custom", x), W, "lock")[0]
        graph.add(Wait(owner(n), lambda r=requests[n]: gate.blockers(r), lambda e: True))
    assert graph.find_cycle(owner(1)) is None
    requests[3] = gate.enter(owner(3), Resource("custom", "a"), W, "lock")[0]
    graph.add(Wait(owner(3), lambda: gate.blockers(requests[3]), lambda e: True))
    cycle = graph.find_cycle(owner(3))
    assert cycle is not None and [e.waiter for e in cycle] == [owner(3), owner(1), owner(2)]
    assert victim_of(cycle) == owner(3)
    assert describe_cycle(cycle, owner(2)).startswith(
        "deadlock: task t_2 (agent agent2) waits for custom:c being written by task t_3 "
        "(agent agent3), which waits for custom:a")
    assert len(graph.edges()) == 3
    for request in (a, b, c, *requests.values()):
        gate.cancel(request)
