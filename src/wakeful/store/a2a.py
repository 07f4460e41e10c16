"""The A2A family port: A2A tasks and their push-notification configs.

Contracts: :meth:`A2AStore.create` stores the Wakeful task and its A2A row in one
transaction (a task a caller was told about exists after a SIGKILL); every awaited write
is durable on return; reads see this process's own writes.

The family is reached through :func:`a2a_store` (the backend is imported only here, as
:func:`wakeful.store.open_store` does for stores), so the core store port needs no
change for it.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from wakeful.core.a2a import A2ATaskRow
from wakeful.core.records import TaskRecord
from wakeful.errors import WakefulError
from wakeful.store.base import Store

# store backend module -> "module:class" of its A2A family
_BACKENDS = {"wakeful.store.sqlite": "wakeful.store.sqlite.a2a:SQLiteA2AStore",
             "wakeful.store.postgres": "wakeful.store.postgres.a2a:PgA2AStore"}


class A2AStore(Protocol):
    async def create(self, row: A2ATaskRow, task: TaskRecord) -> None:
        """Store the Wakeful task and its A2A row in one transaction."""

    async def append_history(self, task_id: str, message: dict[str, Any]) -> None: ...

    async def get(self, task_id: str) -> A2ATaskRow | None: ...

    async def for_agent(self, agent: str, context_id: str | None = None
                        ) -> list[A2ATaskRow]:
        """The agent's A2A tasks (of one context, if given), newest first."""

    async def save_push(self, task_id: str, config_id: str, config: dict[str, Any]
                        ) -> None: ...

    async def pushes(self, task_id: str) -> list[tuple[str, dict[str, Any], str | None]]:
        """(config id, config, last state delivered) of each of the task's configs."""

    async def delete_push(self, task_id: str, config_id: str) -> bool: ...

    async def mark_pushed(self, task_id: str, config_id: str, state: str) -> None: ...

    async def undelivered_pushes(self) -> list[tuple[str, str]]:
        """(task id, config id) whose task's current state was not delivered yet."""


def a2a_store(store: Store) -> A2AStore:
    """The A2A family of ``store``; a clear error for a backend without one."""
    module = type(store).__module__
    for prefix, target in _BACKENDS.items():
        if module == prefix or module.startswith(prefix + "."):
            name, _, cls = target.partition(":")
            family: A2AStore = getattr(importlib.import_module(name), cls)(store)
            return family
    raise WakefulError(f"the A2A server needs a store with A2A tables; "
                       f"{type(store).__name__} has none (use the SQLite or PostgreSQL store)")
