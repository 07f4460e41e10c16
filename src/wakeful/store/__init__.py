"""Persistence behind one interface; SQLite first."""

from wakeful.store.base import Store
from wakeful.store.records import AgentRecord, Event, RunRecord, TaskRecord
from wakeful.store.sqlite import SQLiteStore

__all__ = ["AgentRecord", "Event", "RunRecord", "SQLiteStore", "Store", "TaskRecord"]
