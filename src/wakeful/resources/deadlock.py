"""The wait-for graph and deadlock detection.

Nodes are tasks; there is an edge W -> H while task W waits for a resource that task H
holds or is queued ahead for, in a conflicting mode. Edges are not stored: each waiting
task registers how to compute its current blockers (from the gate, or from the store
for locks held by other processes), so the graph is always exactly the present state.

Detection runs when a wait begins or its blockers change (an edge is inserted): a
depth-first search from the new waiter's blockers that comes back to the waiter is a
cycle. One waiter in the cycle must give up or nobody ever moves; we choose the
youngest (the task created last: task ids sort by creation time), which has usually
done the least work, and end its wait with a :class:`DeadlockError` naming the cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wakeful.core.resources import Owner
from wakeful.resources.gate import Blocker


@dataclass(frozen=True, slots=True)
class Edge:
    waiter: Owner
    blocker: Blocker


@dataclass
class Wait:
    owner: Owner
    blockers: Callable[[], list[Blocker]]
    abort: Callable[[BaseException], bool]  # end this wait with an error; False if too late
    # Blockers known as a list (waits on the store) rather than computed by the gate.
    listed: list[Blocker] | None = None


class WaitForGraph:
    def __init__(self) -> None:
        self._waits: dict[Owner, Wait] = {}

    def add(self, wait: Wait) -> None:
        self._waits[wait.owner] = wait

    def remove(self, wait: Wait) -> None:
        if self._waits.get(wait.owner) is wait:
            del self._waits[wait.owner]

    def waiting(self, owner: Owner) -> Wait | None:
        return self._waits.get(owner)

    def listed_as_blocker(self, owner: Owner) -> bool:
        """Does a wait on the store name ``owner`` as one of its blockers?"""
        return any(b.owner == owner for w in self._waits.values() if w.listed is not None
                   for b in w.listed)

    def edges(self) -> list[Edge]:
        return [Edge(w.owner, b) for w in list(self._waits.values()) for b in w.blockers()]

    def find_cycle(self, start: Owner) -> list[Edge] | None:
        """A cycle of waits through ``start``, as edges starting at ``start``."""
        path: list[Edge] = []
        seen: set[Owner] = set()

        def visit(node: Owner) -> bool:
            wait = self._waits.get(node)
            if wait is None:
                return False
            for blocker in wait.blockers():
                path.append(Edge(node, blocker))
                target = blocker.owner
                if target == start:
                    return True
                if target not in seen:
                    seen.add(target)
                    if visit(target):
                        return True
                path.pop()
            return False

        seen.add(start)
        return list(path) if visit(start) else None


def victim_of(cycle: list[Edge]) -> Owner:
    """The youngest waiter in the cycle (largest task id: ids sort by creation)."""
    return max((edge.waiter for edge in cycle), key=lambda o: o.task_id)


def describe_cycle(cycle: list[Edge], victim: Owner) -> str:
    """``deadlock: task B (agent y) waits for file:a held by task A (agent x) with a
    write lock (token 1), which waits for file:b held by task B (agent y) with a write
    lock (token 2)``, told from the victim's point of view."""
    start = next(i for i, e in enumerate(cycle) if e.waiter == victim)
    ordered = cycle[start:] + cycle[:start]
    parts = [f"{ordered[0].waiter} waits for {ordered[0].blocker.describe()}"]
    parts += [f"which waits for {edge.blocker.describe()}" for edge in ordered[1:]]
    return "deadlock: " + ", ".join(parts)
