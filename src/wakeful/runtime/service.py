"""Services: the runtime's pluggable parts (mailbox, scheduler, resources...).

A service starts after the store is open and before any agent runs, and stops after
every agent has stopped, so agents can rely on it for their whole life. Services stop
in reverse order of starting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from wakeful.runtime.runtime import Runtime


class Service(Protocol):
    name: str

    async def start(self, runtime: Runtime) -> None: ...

    async def stop(self) -> None: ...
