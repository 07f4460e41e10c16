"""What the approvals service uses of the runtime it serves: the store, the event log,
the clock, the poll interval, the tool registry (it runs approved calls through it)
and each agent's definition (its approval rules). Typing the runtime as this protocol
keeps ``approvals`` from importing the runtime that composes it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from wakeful.observe.events import EventLog
from wakeful.project.definitions import AgentDefinition
from wakeful.store.base import Store
from wakeful.toolkit.registry import ToolRegistry

if TYPE_CHECKING:
    from wakeful.schedule.clock import Clock


class DefinedAgent(Protocol):
    @property
    def definition(self) -> AgentDefinition: ...


class ApprovalsHost(Protocol):
    @property
    def store(self) -> Store: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def poll_interval_s(self) -> float: ...

    @property
    def tools(self) -> ToolRegistry: ...

    @property
    def agents(self) -> Mapping[str, DefinedAgent]: ...
