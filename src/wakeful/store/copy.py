"""Moving a project's state from one store to another (SQLite <-> PostgreSQL).

Every table the source holds is copied whole into the same table of the destination,
which must be empty: tasks and their conversations, mail, channels, timers, locks,
events, leases. Run it with no worker running on the source (a copy is a snapshot).
"""

from __future__ import annotations

from wakeful.errors import StoreError
from wakeful.store.base import Store

_SKIP = frozenset({"workers", "agent_leases", "resource_waiters"})
"""Who runs what is about live processes, not state: a moved project starts with none."""


async def copy_store(source: Store, target: Store) -> dict[str, int]:
    """Copy every table of ``source`` into ``target``; return rows copied per table."""
    theirs = set(await target.table_names())
    copied: dict[str, int] = {}
    for table in await source.table_names():
        if table in _SKIP:
            continue
        columns, rows = await source.export_rows(table)
        if not rows:
            continue
        if table not in theirs:
            raise StoreError(f"the destination has no table {table!r} ({len(rows)} rows "
                             "to copy); upgrade wakeful where the destination is used")
        _, present = await target.export_rows(table)
        if present:
            raise StoreError(f"the destination already holds {table} rows; copy into an "
                             "empty store")
        await target.import_rows(table, columns, rows)
        copied[table] = len(rows)
    await target.flush()
    return copied
