"""The stored-agents family port: agents created, changed and removed at run time.

Contracts: every awaited write is durable on return; :meth:`StoredAgents.save` raises
the row's ``version`` on every change, so a worker that polls :meth:`StoredAgents.all`
tells what changed since it last looked; a removal leaves a tombstone (``removed_at``
and what to do with the agent's running tasks) rather than deleting the row, so that
every worker, and a worker started later, sees it; saving a removed name again brings
the agent back (a new version). Reads see this process's own writes.
"""

from __future__ import annotations

from typing import Protocol

from wakeful.core.stored_agents import Removal, StoredAgent
from wakeful.store.base import Store
from wakeful.store.family import find_family

_BACKENDS = {"wakeful.store.sqlite":
             "wakeful.store.sqlite.agent_definitions:SQLiteStoredAgents",
             "wakeful.store.postgres":
             "wakeful.store.postgres.agent_definitions:PgStoredAgents"}


class StoredAgents(Protocol):
    async def save(self, agent: StoredAgent, *, create: bool) -> StoredAgent:
        """Create (``create``: WakefulError if a live agent has the name) or change
        (WakefulError if there is no live one) an agent; returns it as stored, with
        its new version."""

    async def remove(self, name: str, removal: Removal) -> StoredAgent | None:
        """Mark an agent removed (a tombstone, new version); None if there is no live
        one of that name."""

    async def get(self, name: str) -> StoredAgent | None:
        """The agent, tombstones included."""

    async def all(self) -> list[StoredAgent]:
        """Every stored agent, tombstones included, by name."""

    async def count_spawned(self, parent: str) -> int:
        """How many live agents ``parent`` spawned."""


def stored_agents(store: Store) -> StoredAgents:
    """The stored-agents family of ``store``."""
    family: StoredAgents = find_family(store, _BACKENDS, "agents made at run time")
    return family
