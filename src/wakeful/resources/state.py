"""The resource manager's shared state (the gate, the wait-for graph, the grants and
mirrors of locks) and its names, used by every part of
:class:`~wakeful.resources.manager.ResourceManager`: auto-pause, explicit locks, and
leases and housekeeping.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from wakeful.core.locks import LockRow
from wakeful.core.resources import Owner, Resource, ResourceKinds
from wakeful.core.scope import TaskScope
from wakeful.errors import ResourceError, WakefulError
from wakeful.ids import new_id
from wakeful.project.definitions import ResourcesConfig
from wakeful.resources.deadlock import WaitForGraph
from wakeful.resources.gate import Gate, Request
from wakeful.resources.workspace import Workspace
from wakeful.store.locks import LockStore

if TYPE_CHECKING:
    from wakeful.resources.host import ResourceHost
    from wakeful.toolkit.context import ToolContext

log = structlog.get_logger("wakeful.resources")

KEEP_ALIVE_S = 10.0  # a place in line lapses this long after its runtime stops renewing it
MAINTAIN_EVERY_S = 1.0
REAP_EVERY_S = 5.0
_TASK_ENDS = frozenset({"done", "failed", "cancelled"})


def owner_of(ctx: ToolContext) -> Owner:
    return Owner(ctx.task_id, ctx.agent)


class ManagerState:
    """What the resource manager's parts share."""

    def __init__(self, workspace: Path | str | None = None,
                 config: ResourcesConfig | None = None) -> None:
        self.config = config or ResourcesConfig()
        self.workspace = Workspace(workspace) if workspace is not None else None
        self.kinds = ResourceKinds()
        self.kinds.register("file", "a file or folder of the workspace", self._canonical_path,
                            hierarchical=True)
        self.gate = Gate()
        self.gate.on_release = lambda _: self._announce()
        self._change_listeners: list[Callable[[], None]] = []
        self.graph = WaitForGraph()
        self.process = new_id("rt")
        self.pid = os.getpid()
        self.lines: set[int] = set()  # this runtime's places in line in the store
        self.deadlocks: deque[str] = deque(maxlen=50)
        self._runtime: ResourceHost | None = None
        self._store: LockStore | None = None
        # Locks this runtime granted, per task, kept past expiry until the task releases
        # them, so a write that relies on one that lapsed is refused, not waved through.
        self._grants: dict[str, dict[int, LockRow]] = {}
        # The same, as the store remembers them (a task resumed by this process after
        # another one granted its locks): task -> [(resource, token)].
        self._stored: dict[str, list[tuple[Resource, int]]] = {}
        self._mirrors: dict[int, tuple[Request, LockRow]] = {}  # live locks, in the gate
        self._changed: asyncio.Future[None] | None = None
        self._kick: asyncio.Future[None] | None = None
        self._scope = TaskScope("resources")

    @property
    def runtime(self) -> ResourceHost:
        if self._runtime is None:
            raise WakefulError("the resource manager is not started (start the runtime)")
        return self._runtime

    @property
    def store(self) -> LockStore:
        if self._store is None:
            raise WakefulError("the resource manager is not started (start the runtime)")
        return self._store

    def emit(self, type: str, owner: Owner, **data: Any) -> None:
        if self._runtime is not None:
            self._runtime.events.emit(type, agent=owner.agent, task_id=owner.task_id, data=data)

    # names ---------------------------------------------------------------
    def _canonical_path(self, path: str) -> str:
        return self._workspace().canonical(path)

    def _workspace(self) -> Workspace:
        if self.workspace is None:
            raise ResourceError("file resources need a workspace folder, and this runtime "
                                "has none (set 'workspace' in wakeful.yaml, or pass "
                                "workspace= to ResourceManager)")
        return self.workspace

    def parse(self, text: str) -> Resource:
        return self.kinds.parse(text)

    def path(self, path: str) -> Path:
        """The real path of a workspace path, refused if it leaves the workspace."""
        return self._workspace().resolve(path)

    def _announce(self) -> None:
        for listener in self._change_listeners:
            listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever something is released in this runtime (an
        operation ends, a lock is released or lapses): the hook for waking those who
        wait for a resource to be free."""
        self._change_listeners.append(listener)
