"""The wait-for graph across processes, as one recursive query on the lock tables.

Each runtime finds the cycles among its own waits in memory (resources/deadlock.py);
a cycle whose waits live in different workers is visible only in the store: task W
waits for a resource (a row in ``resource_waiters``) that task H holds (a live row in
``resource_locks``, in a conflicting mode, on the same resource or one inside or around
it). Following those edges from a waiter back to itself is a cycle. Both backends run
the same query; only the placeholder and the string search differ.
"""

from __future__ import annotations

_TEMPLATE = """
WITH RECURSIVE edge(waiter, holder) AS (
    SELECT DISTINCT w.holder_task, l.holder_task
    FROM resource_waiters w JOIN resource_locks l ON (
        l.resource = w.resource
        OR substr(l.resource, 1, length(w.resource) + 1) = w.resource || '/'
        OR substr(w.resource, 1, length(l.resource) + 1) = l.resource || '/')
    WHERE (w.mode = 'write' OR l.mode = 'write') AND l.holder_task != w.holder_task
      AND w.alive_until > {now} AND l.expires_at > {now}
),
walk(task, path, depth) AS (
    SELECT holder, ',' || waiter || ',' || holder || ',', 1 FROM edge WHERE waiter = {task}
    UNION ALL
    SELECT e.holder, walk.path || e.holder || ',', walk.depth + 1
    FROM walk JOIN edge e ON e.waiter = walk.task
    WHERE walk.task != {task} AND walk.depth < 64
      AND (e.holder = {task} OR {find}(walk.path, ',' || e.holder || ',') = 0)
)
SELECT path FROM walk WHERE task = {task} ORDER BY depth LIMIT 1
"""


def cycle_query(task: str, now: str, find: str) -> str:
    """The query: ``task`` its placeholder, ``now`` the store's clock in SQL, ``find``
    the position-of-substring function (``instr`` or ``strpos``)."""
    return _TEMPLATE.format(task=task, now=now, find=find)


def cycle_of(path: str | None) -> list[str]:
    """The tasks of a cycle from the query's path (``,w,h1,...,w,``): each once."""
    if not path:
        return []
    tasks = [t for t in path.split(",") if t]
    return tasks[:-1]
