"""What the resource manager uses of the runtime it serves: the store (its lock family
and doorbells) and the event log. Typing the runtime as this protocol keeps resources
from importing the runtime that composes it (the layers stay one way)."""

from __future__ import annotations

from typing import Protocol

from wakeful.observe.events import EventLog
from wakeful.store.base import Store


class ResourceHost(Protocol):
    @property
    def store(self) -> Store: ...

    @property
    def events(self) -> EventLog: ...
