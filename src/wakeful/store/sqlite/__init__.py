"""The SQLite backend: one file, WAL, group commit. Nothing outside this folder imports
it except through :func:`wakeful.store.open_store`."""

from wakeful.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
