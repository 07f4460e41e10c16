"""The approvals family port: people's approvals of tool calls.

Contracts: :meth:`ApprovalStore.request` is idempotent on the approval's key (the task,
the step and the call), so a resumed task never asks twice; :meth:`ApprovalStore.decide`
is a compare-and-set (``pending`` -> ``approved`` | ``denied``) written in one
transaction with its ``approval.decided`` event: exactly one decision wins, across
processes, and who decided what and when is in the event log with it. Each decision gets
a ``decided_seq`` larger than any before it, so a runtime in another process finds new
decisions with :meth:`ApprovalStore.decided_after`. Every awaited write is durable on
return.

The family is reached through :func:`approval_store` (the backend is imported only
here, as :func:`wakeful.store.a2a.a2a_store` does), so the core store port needs no
change for it.
"""

from __future__ import annotations

from typing import Protocol

from wakeful.core.approvals import Approval, ApprovalState
from wakeful.core.records import Event
from wakeful.store.base import Store
from wakeful.store.family import find_family

# store backend module -> "module:class" of its approvals family
_BACKENDS = {"wakeful.store.sqlite": "wakeful.store.sqlite.approvals:SQLiteApprovalStore",
             "wakeful.store.postgres": "wakeful.store.postgres.approvals:PgApprovalStore"}


class ApprovalStore(Protocol):
    async def request(self, approval: Approval, event: Event | None = None
                      ) -> tuple[Approval, bool]:
        """Store ``approval`` (and ``event`` with it) unless one with its key exists;
        return the stored one and whether it is new (only then is ``event`` written)."""

    async def decide(self, approval_id: str, state: ApprovalState, decided_by: str, *,
                     at: float, reason: str | None = None,
                     new_arguments: str | None = None, event: Event | None = None
                     ) -> Approval | None:
        """Decide a pending approval (and write ``event`` with it); None if it was not
        pending any more (someone decided first) or does not exist."""

    async def get(self, approval_id: str) -> Approval | None: ...

    async def by_key(self, key: str) -> Approval | None: ...

    async def listing(self, *, state: ApprovalState | None = None,
                      task_id: str | None = None, agent: str | None = None,
                      limit: int = 1000) -> list[Approval]:
        """Approvals, oldest first, filtered."""

    async def decided_after(self, seq: int, limit: int = 1000) -> list[Approval]:
        """Decisions with ``decided_seq`` above ``seq``, in decision order."""

    async def last_seq(self) -> int:
        """The largest ``decided_seq`` so far (0: none)."""


def approval_store(store: Store) -> ApprovalStore:
    """The approvals family of ``store``; a clear error for a backend without one."""
    family: ApprovalStore = find_family(store, _BACKENDS, "approvals")
    return family
